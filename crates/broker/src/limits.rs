//! Connection limits (`max.connections`, `max.connections.per.ip`), as an I/O-free counter
//! with permits that release on drop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max.connections` reached.
    Total { limit: usize },
    /// `max.connections.per.ip` reached for this address.
    PerIp { limit: usize },
}

#[derive(Debug)]
pub struct ConnectionLimiter {
    total_max: usize,
    per_ip_max: usize,
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Held by a connection for its lifetime.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    /// Limits of `i32::MAX` (Kafka's defaults) mean unlimited.
    pub fn new(total_max: i32, per_ip_max: i32) -> Arc<Self> {
        let as_limit = |v: i32| usize::try_from(v.max(0)).unwrap_or(usize::MAX);
        Arc::new(ConnectionLimiter {
            total_max: as_limit(total_max),
            per_ip_max: as_limit(per_ip_max),
            state: Mutex::new((0, HashMap::new())),
        })
    }

    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refused> {
        let mut state = self.state.lock().expect("connection limiter lock");
        if state.0 >= self.total_max {
            return Err(Refused::Total {
                limit: self.total_max,
            });
        }
        let per_ip = state.1.get(&ip).copied().unwrap_or(0);
        if per_ip >= self.per_ip_max {
            return Err(Refused::PerIp {
                limit: self.per_ip_max,
            });
        }
        state.0 += 1;
        state.1.insert(ip, per_ip + 1);
        Ok(ConnectionPermit {
            limiter: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.state.lock().expect("connection limiter lock").0
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut state = self.limiter.state.lock().expect("connection limiter lock");
        state.0 = state.0.saturating_sub(1);
        if let Some(n) = state.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                state.1.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn given_per_ip_limit_when_reached_should_refuse_that_ip_only() {
        let l = ConnectionLimiter::new(10, 2);
        let _a = l.try_acquire(ip(1)).unwrap();
        let _b = l.try_acquire(ip(1)).unwrap();
        assert_eq!(
            l.try_acquire(ip(1)).unwrap_err(),
            Refused::PerIp { limit: 2 }
        );
        assert!(l.try_acquire(ip(2)).is_ok());
    }

    #[test]
    fn given_total_limit_when_a_permit_drops_should_admit_again() {
        let l = ConnectionLimiter::new(2, 10);
        let a = l.try_acquire(ip(1)).unwrap();
        let _b = l.try_acquire(ip(2)).unwrap();
        assert_eq!(
            l.try_acquire(ip(3)).unwrap_err(),
            Refused::Total { limit: 2 }
        );
        drop(a);
        let _c = l
            .try_acquire(ip(3))
            .expect("admitted once a permit is gone");
        assert_eq!(l.active(), 2);
    }
}
