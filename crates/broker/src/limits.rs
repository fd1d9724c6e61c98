//! Connection limits (`max.connections`, `max.connections.per.ip`), as an I/O-free counter
//! with permits that release on drop, and the memory pool of requests being read
//! (`queued.max.request.bytes`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

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

/// `queued.max.request.bytes`: the bytes of requests being read or handled, across all
/// connections. A connection takes a request's size from the pool once it knows it (from the
/// size prefix) and before it buffers the rest; while the pool is empty it stops reading (Kafka
/// mutes the channel). As Kafka's non-strict `SimpleMemoryPool`, an allocation succeeds while
/// any memory is left, even if it is larger: the pool may go below zero by one request, and a
/// request larger than what is left never waits for ever.
#[derive(Debug)]
pub struct RequestMemoryPool {
    available: Mutex<i64>,
    released: Notify,
}

/// Bytes of a request taken from the pool, given back on drop.
#[derive(Debug)]
pub struct RequestMemory {
    pool: Arc<RequestMemoryPool>,
    bytes: i64,
}

impl RequestMemoryPool {
    /// The pool of `queued.max.request.bytes`; `None` (no limit) when it is not positive.
    pub fn new(bytes: i64) -> Option<Arc<Self>> {
        (bytes > 0).then(|| {
            Arc::new(RequestMemoryPool {
                available: Mutex::new(bytes),
                released: Notify::new(),
            })
        })
    }

    /// Takes `bytes` if any memory is left.
    pub fn try_allocate(self: &Arc<Self>, bytes: usize) -> Option<RequestMemory> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let mut available = self.available.lock().expect("request memory lock");
        if *available < 1 {
            return None;
        }
        *available = available.saturating_sub(bytes);
        Some(RequestMemory {
            pool: self.clone(),
            bytes,
        })
    }

    /// Takes `bytes`, waiting until some memory is left.
    pub async fn allocate(self: &Arc<Self>, bytes: usize) -> RequestMemory {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check: a release between the check and the wait wakes it.
            released.as_mut().enable();
            if let Some(memory) = self.try_allocate(bytes) {
                return memory;
            }
            released.await;
        }
    }

    /// Bytes left (negative when a request larger than what was left is being read).
    pub fn available(&self) -> i64 {
        *self.available.lock().expect("request memory lock")
    }
}

impl Drop for RequestMemory {
    fn drop(&mut self) {
        let mut available = self.pool.available.lock().expect("request memory lock");
        *available = available.saturating_add(self.bytes);
        drop(available);
        self.pool.released.notify_waiters();
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

    #[test]
    fn given_no_positive_limit_should_have_no_pool() {
        assert!(RequestMemoryPool::new(-1).is_none());
        assert!(RequestMemoryPool::new(0).is_none());
    }

    #[test]
    fn given_memory_left_should_allocate_even_beyond_it_then_refuse_until_released() {
        let pool = RequestMemoryPool::new(100).unwrap();
        let a = pool.try_allocate(60).unwrap();
        // 40 left: a larger request is still admitted (non-strict), taking the pool below zero.
        let b = pool.try_allocate(90).unwrap();
        assert_eq!(pool.available(), -50);
        assert!(pool.try_allocate(1).is_none(), "nothing left");
        drop(a);
        assert_eq!(pool.available(), 10);
        let c = pool.try_allocate(5).unwrap();
        drop((b, c));
        assert_eq!(pool.available(), 100);
    }

    #[tokio::test]
    async fn given_an_empty_pool_an_allocation_should_wait_for_a_release() {
        let pool = RequestMemoryPool::new(10).unwrap();
        let held = pool.try_allocate(10).unwrap();
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.allocate(4).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "waits while the pool is empty");
        drop(held);
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("woken by the release")
            .unwrap();
        assert_eq!(pool.available(), 6);
        drop(got);
        assert_eq!(pool.available(), 10);
    }
}
