//! Incremental fetch sessions (KIP-227), as an I/O-free cache.
//!
//! A client that sends `session_epoch = 0` asks for a new session holding the partitions of
//! that (full) request. Later requests with the session's id and the next epoch name only
//! partitions that changed (new fetch offset) and the ones to forget; the response names
//! only partitions with something new: records, an error, or a changed high watermark, last
//! stable offset or log start offset. `session_epoch = -1` means a sessionless full fetch.

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use uuid::Uuid;

/// Kafka's default for `min.incremental.fetch.session.eviction.ms`.
const SESSION_EVICTION_MS: i64 = 120_000;
/// Bound on the partitions one session may hold.
const SESSION_PARTITIONS_MAX: usize = 100_000;

/// A partition named in a fetch, by topic id (v13+) or name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic_id: Uuid,
    pub topic: String,
    pub partition: i32,
}

/// What a client asked of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchSpec {
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
}

/// What the last response told the client about a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionSent {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

struct SessionPartition {
    spec: FetchSpec,
    sent: Option<PartitionSent>,
}

struct FetchSession {
    next_epoch: i32,
    /// In the order the client added them.
    order: Vec<PartitionKey>,
    partitions: HashMap<PartitionKey, SessionPartition>,
    last_used_ms: i64,
}

/// How to answer one fetch request.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchContext {
    /// Full response for the partitions requested; `session_id` is 0 when none was created.
    Full {
        session_id: i32,
        partitions: Vec<(PartitionKey, FetchSpec)>,
    },
    /// Incremental response: fetch every partition of the session, answer only the changed.
    Incremental {
        session_id: i32,
        partitions: Vec<(PartitionKey, FetchSpec)>,
    },
    /// A top-level error for the whole request.
    Error(ResponseError),
}

pub struct FetchSessionCache {
    sessions: HashMap<i32, FetchSession>,
    sessions_max: usize,
    next_id: i32,
}

impl FetchSessionCache {
    pub fn new(sessions_max: usize) -> Self {
        FetchSessionCache {
            sessions: HashMap::new(),
            sessions_max,
            next_id: 1,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    fn allocate_id(&mut self) -> i32 {
        loop {
            let id = self.next_id;
            self.next_id = if self.next_id == i32::MAX {
                1
            } else {
                self.next_id + 1
            };
            if !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// Makes room for one more session if the cache is full, by evicting the least recently
    /// used session idle for longer than the eviction time. Returns whether there is room.
    fn make_room(&mut self, now_ms: i64) -> bool {
        if self.sessions.len() < self.sessions_max {
            return true;
        }
        let oldest = self
            .sessions
            .iter()
            .min_by_key(|(_, s)| s.last_used_ms)
            .map(|(id, s)| (*id, s.last_used_ms));
        match oldest {
            Some((id, last_used_ms)) if now_ms - last_used_ms >= SESSION_EVICTION_MS => {
                self.sessions.remove(&id);
                true
            }
            _ => false,
        }
    }

    /// Decides how to answer a fetch, updating the session it names.
    pub fn new_context(
        &mut self,
        session_id: i32,
        session_epoch: i32,
        requested: Vec<(PartitionKey, FetchSpec)>,
        forgotten: Vec<PartitionKey>,
        now_ms: i64,
    ) -> FetchContext {
        const INITIAL_EPOCH: i32 = 0;
        const FINAL_EPOCH: i32 = -1;
        if session_epoch == FINAL_EPOCH || session_epoch == INITIAL_EPOCH {
            if session_id != 0 {
                self.sessions.remove(&session_id);
            }
            if session_epoch == FINAL_EPOCH {
                return FetchContext::Full {
                    session_id: 0,
                    partitions: requested,
                };
            }
            if requested.len() > SESSION_PARTITIONS_MAX || !self.make_room(now_ms) {
                return FetchContext::Full {
                    session_id: 0,
                    partitions: requested,
                };
            }
            let id = self.allocate_id();
            let mut session = FetchSession {
                next_epoch: 1,
                order: Vec::with_capacity(requested.len()),
                partitions: HashMap::with_capacity(requested.len()),
                last_used_ms: now_ms,
            };
            for (key, spec) in &requested {
                if session
                    .partitions
                    .insert(
                        key.clone(),
                        SessionPartition {
                            spec: *spec,
                            sent: None,
                        },
                    )
                    .is_none()
                {
                    session.order.push(key.clone());
                }
            }
            self.sessions.insert(id, session);
            return FetchContext::Full {
                session_id: id,
                partitions: requested,
            };
        }
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return FetchContext::Error(ResponseError::FetchSessionIdNotFound);
        };
        if session.next_epoch != session_epoch {
            return FetchContext::Error(ResponseError::InvalidFetchSessionEpoch);
        }
        for key in &forgotten {
            if session.partitions.remove(key).is_some() {
                session.order.retain(|k| k != key);
            }
        }
        for (key, spec) in requested {
            match session.partitions.get_mut(&key) {
                Some(p) => p.spec = spec,
                None => {
                    if session.partitions.len() >= SESSION_PARTITIONS_MAX {
                        continue;
                    }
                    session.order.push(key.clone());
                    session
                        .partitions
                        .insert(key, SessionPartition { spec, sent: None });
                }
            }
        }
        session.next_epoch = if session.next_epoch == i32::MAX {
            1
        } else {
            session.next_epoch + 1
        };
        session.last_used_ms = now_ms;
        let partitions = session
            .order
            .iter()
            .map(|k| (k.clone(), session.partitions[k].spec))
            .collect();
        FetchContext::Incremental {
            session_id,
            partitions,
        }
    }

    /// Whether an incremental response must name this partition, and if so remembers what it
    /// tells the client. `has_news` is true when the partition has records or an error.
    pub fn should_send(
        &mut self,
        session_id: i32,
        key: &PartitionKey,
        sent: PartitionSent,
        has_news: bool,
    ) -> bool {
        let Some(p) = self
            .sessions
            .get_mut(&session_id)
            .and_then(|s| s.partitions.get_mut(key))
        else {
            return true;
        };
        let changed = p.sent != Some(sent);
        if has_news || changed {
            p.sent = Some(sent);
            true
        } else {
            false
        }
    }

    /// Records what a full response told the client, so the next incremental one can tell
    /// what changed.
    pub fn remember_sent(&mut self, session_id: i32, key: &PartitionKey, sent: PartitionSent) {
        if let Some(p) = self
            .sessions
            .get_mut(&session_id)
            .and_then(|s| s.partitions.get_mut(key))
        {
            p.sent = Some(sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> PartitionKey {
        PartitionKey {
            topic_id: Uuid::nil(),
            topic: "t".into(),
            partition: p,
        }
    }
    fn spec(offset: i64) -> FetchSpec {
        FetchSpec {
            fetch_offset: offset,
            partition_max_bytes: 1024,
            current_leader_epoch: -1,
        }
    }

    #[test]
    fn given_initial_epoch_should_create_session_with_full_response() {
        let mut c = FetchSessionCache::new(10);
        let ctx = c.new_context(0, 0, vec![(key(0), spec(0)), (key(1), spec(5))], vec![], 0);
        let FetchContext::Full {
            session_id,
            partitions,
        } = ctx
        else {
            panic!("{ctx:?}")
        };
        assert!(session_id > 0);
        assert_eq!(partitions.len(), 2);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn given_incremental_request_should_keep_unnamed_partitions_and_apply_updates() {
        let mut c = FetchSessionCache::new(10);
        let FetchContext::Full { session_id, .. } =
            c.new_context(0, 0, vec![(key(0), spec(0)), (key(1), spec(5))], vec![], 0)
        else {
            panic!()
        };
        let ctx = c.new_context(session_id, 1, vec![(key(1), spec(9))], vec![], 1);
        assert_eq!(
            ctx,
            FetchContext::Incremental {
                session_id,
                partitions: vec![(key(0), spec(0)), (key(1), spec(9))]
            }
        );
        let ctx = c.new_context(session_id, 2, vec![], vec![key(0)], 2);
        assert_eq!(
            ctx,
            FetchContext::Incremental {
                session_id,
                partitions: vec![(key(1), spec(9))]
            }
        );
    }

    #[test]
    fn given_wrong_epoch_should_answer_invalid_fetch_session_epoch() {
        let mut c = FetchSessionCache::new(10);
        let FetchContext::Full { session_id, .. } =
            c.new_context(0, 0, vec![(key(0), spec(0))], vec![], 0)
        else {
            panic!()
        };
        assert_eq!(
            c.new_context(session_id, 5, vec![], vec![], 0),
            FetchContext::Error(ResponseError::InvalidFetchSessionEpoch)
        );
        assert_eq!(
            c.new_context(session_id + 100, 1, vec![], vec![], 0),
            FetchContext::Error(ResponseError::FetchSessionIdNotFound)
        );
    }

    #[test]
    fn given_final_epoch_should_close_session_and_answer_sessionless() {
        let mut c = FetchSessionCache::new(10);
        let FetchContext::Full { session_id, .. } =
            c.new_context(0, 0, vec![(key(0), spec(0))], vec![], 0)
        else {
            panic!()
        };
        let ctx = c.new_context(session_id, -1, vec![(key(0), spec(3))], vec![], 0);
        assert!(matches!(ctx, FetchContext::Full { session_id: 0, .. }));
        assert!(c.is_empty());
    }

    #[test]
    fn given_full_cache_should_answer_without_session_until_eviction_time() {
        let mut c = FetchSessionCache::new(1);
        assert!(matches!(
            c.new_context(0, 0, vec![], vec![], 0),
            FetchContext::Full { session_id: 1, .. }
        ));
        assert!(matches!(
            c.new_context(0, 0, vec![], vec![], 10),
            FetchContext::Full { session_id: 0, .. }
        ));
        assert!(matches!(
            c.new_context(0, 0, vec![], vec![], SESSION_EVICTION_MS + 1),
            FetchContext::Full { session_id: 2, .. }
        ));
    }

    #[test]
    fn given_unchanged_partition_should_be_left_out_of_incremental_response() {
        let mut c = FetchSessionCache::new(10);
        let FetchContext::Full { session_id, .. } =
            c.new_context(0, 0, vec![(key(0), spec(0))], vec![], 0)
        else {
            panic!()
        };
        let sent = PartitionSent {
            high_watermark: 10,
            last_stable_offset: 10,
            log_start_offset: 0,
        };
        c.remember_sent(session_id, &key(0), sent);
        assert!(!c.should_send(session_id, &key(0), sent, false));
        assert!(c.should_send(session_id, &key(0), sent, true));
        let moved = PartitionSent {
            high_watermark: 11,
            ..sent
        };
        assert!(c.should_send(session_id, &key(0), moved, false));
        assert!(!c.should_send(session_id, &key(0), moved, false));
    }
}
