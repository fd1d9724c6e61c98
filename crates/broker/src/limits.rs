//! Connection limits (`max.connections`, `max.connections.per.ip`), as a counter with
//! slots and permits that release on drop, and the memory pool of requests being read
//! (`queued.max.request.bytes`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max.connections.per.ip` reached for this address.
    PerIp { limit: usize },
}

/// `max.connections` and `max.connections.per.ip`, as Kafka applies them (KIP-402): at the
/// broker-wide limit an accepted connection waits for a slot (and the next ones in the listen
/// backlog) until a connection closes, while a connection beyond its address's limit is
/// closed at once.
#[derive(Debug)]
pub struct ConnectionLimiter {
    total_max: usize,
    per_ip_max: usize,
    /// Slots taken (admitted connections and accepted ones being checked), and open
    /// connections by address.
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
    released: Notify,
}

/// A broker-wide slot for an accepted connection; given back on drop unless the connection is
/// admitted into it.
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    taken: bool,
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
            released: Notify::new(),
        })
    }

    /// Takes a broker-wide slot (`max.connections`), waiting while every slot is held.
    pub async fn slot(self: &Arc<Self>) -> ConnectionSlot {
        wait_for(&self.released, || self.try_slot()).await
    }

    /// A broker-wide slot if one is free.
    pub fn try_slot(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let mut state = self.state.lock().expect("connection limiter lock");
        if state.0 >= self.total_max {
            return None;
        }
        state.0 += 1;
        Some(ConnectionSlot {
            limiter: self.clone(),
            taken: false,
        })
    }

    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.state.lock().expect("connection limiter lock").0
    }

    /// Gives back one broker-wide slot and wakes an accept waiting for one.
    fn release_slot(&self, state: &mut (usize, HashMap<IpAddr, usize>)) {
        state.0 = state.0.saturating_sub(1);
        self.released.notify_waiters();
    }
}

impl ConnectionSlot {
    /// Admits a connection from `ip` into this slot, unless its address has
    /// `max.connections.per.ip` open already (the slot is then given back).
    pub fn admit(mut self, ip: IpAddr) -> Result<ConnectionPermit, Refused> {
        let mut state = self.limiter.state.lock().expect("connection limiter lock");
        let per_ip = state.1.get(&ip).copied().unwrap_or(0);
        if per_ip >= self.limiter.per_ip_max {
            return Err(Refused::PerIp {
                limit: self.limiter.per_ip_max,
            });
        }
        state.1.insert(ip, per_ip + 1);
        drop(state);
        self.taken = true;
        Ok(ConnectionPermit {
            limiter: self.limiter.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if !self.taken {
            let mut state = self.limiter.state.lock().expect("connection limiter lock");
            self.limiter.release_slot(&mut state);
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut state = self.limiter.state.lock().expect("connection limiter lock");
        if let Some(n) = state.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                state.1.remove(&self.ip);
            }
        }
        self.limiter.release_slot(&mut state);
    }
}

/// Retries `take` until it gives something, waiting for `released` between tries. Bounded:
/// every try but the last is followed by a wait for a release.
async fn wait_for<T>(released: &Notify, mut take: impl FnMut() -> Option<T>) -> T {
    loop {
        let notified = released.notified();
        tokio::pin!(notified);
        // Registered before the try: a release between the try and the wait wakes it.
        notified.as_mut().enable();
        if let Some(taken) = take() {
            return taken;
        }
        notified.await;
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
        wait_for(&self.released, || self.try_allocate(bytes)).await
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

    fn admit(l: &Arc<ConnectionLimiter>, last: u8) -> Result<ConnectionPermit, Refused> {
        l.try_slot().expect("a free slot").admit(ip(last))
    }

    #[test]
    fn given_per_ip_limit_when_reached_should_refuse_that_ip_only_and_free_its_slot() {
        let l = ConnectionLimiter::new(10, 2);
        let _a = admit(&l, 1).unwrap();
        let _b = admit(&l, 1).unwrap();
        assert_eq!(admit(&l, 1).unwrap_err(), Refused::PerIp { limit: 2 });
        assert_eq!(l.active(), 2, "the refused connection's slot is given back");
        assert!(admit(&l, 2).is_ok());
    }

    #[test]
    fn given_total_limit_when_a_permit_drops_should_have_a_slot_again() {
        let l = ConnectionLimiter::new(2, 10);
        let a = admit(&l, 1).unwrap();
        let slot = l.try_slot().unwrap();
        assert!(
            l.try_slot().is_none(),
            "a slot not yet admitted into counts"
        );
        drop(slot);
        let _b = admit(&l, 2).unwrap();
        assert!(l.try_slot().is_none());
        drop(a);
        let _c = admit(&l, 3).expect("admitted once a permit is gone");
        assert_eq!(l.active(), 2);
    }

    #[tokio::test]
    async fn given_total_limit_a_slot_should_wait_until_a_connection_closes() {
        let l = ConnectionLimiter::new(1, 10);
        let a = admit(&l, 1).unwrap();
        let mut waiting = Box::pin(l.slot());
        // Polled once: it finds no slot and waits.
        let pending = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(waiting.as_mut(), cx).is_pending())
        })
        .await;
        assert!(pending, "no slot while the limit is held");
        drop(a);
        let slot = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("a slot once the connection closed");
        assert!(slot.admit(ip(2)).is_ok());
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
