//! The leader epoch cache (Kafka's `leader-epoch-checkpoint`): for each leader epoch that
//! wrote to this log, the first offset it wrote. Answers OffsetForLeaderEpoch.
//!
//! Kept in memory and persisted in the partition directory, in Kafka's text format:
//!
//! ```text
//! 0            <- version
//! 2            <- entry count
//! 0 0          <- epoch start_offset
//! 3 120
//! ```
//!
//! Both columns strictly increase. On recovery the cache is truncated to the log end offset
//! and re-learned from the batches of the segments that were scanned.

/// One entry: `epoch` started writing at `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Entry count above which a checkpoint file is considered damaged.
const CHECKPOINT_ENTRIES_MAX: usize = 1 << 20;
const CHECKPOINT_VERSION: i64 = 0;
/// Kafka's "no epoch" / "no offset" answer.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` wrote from `start_offset` (Kafka's `assign`). A no-op if the
    /// latest entry already says so; an assignment that is not after the latest entry first
    /// removes the entries it contradicts. Negative epochs are ignored. Returns whether the
    /// cache changed.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        if let Some(latest) = self.entries.last() {
            if latest.epoch == epoch && latest.start_offset <= start_offset {
                return false;
            }
        }
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Learns from a stored batch during recovery: an epoch newer than every known one starts
    /// at `start_offset`. Anything else is already known (or contradicts the checkpoint, which
    /// was written before the data and wins). Returns whether the cache changed.
    pub(crate) fn observe(&mut self, epoch: i32, start_offset: i64) -> bool {
        let newer = match self.latest_epoch() {
            None => true,
            Some(latest) => epoch > latest,
        };
        let after = match self.entries.last() {
            None => true,
            Some(e) => start_offset > e.start_offset,
        };
        if epoch >= 0 && newer && after {
            self.entries.push(EpochEntry {
                epoch,
                start_offset,
            });
            return true;
        }
        false
    }

    /// Removes the entries that start at or after `end_offset` (the log was cut there).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// OffsetForLeaderEpoch, as Kafka's `LeaderEpochFileCache.endOffsetFor`:
    /// - `requested` is the latest epoch: `(requested, log_end_offset)`;
    /// - otherwise, with `next` the first entry with a larger epoch: `(largest epoch <=
    ///   requested, next.start_offset)`, or `(requested, next.start_offset)` if no epoch is
    ///   `<= requested`;
    /// - `requested` undefined (negative), larger than every epoch, or an empty cache:
    ///   `(-1, -1)`.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested < 0 {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.iter().position(|e| e.epoch > requested);
        match higher {
            None => (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET),
            Some(0) => (requested, self.entries[0].start_offset),
            Some(i) => (self.entries[i - 1].epoch, self.entries[i].start_offset),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut s = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            s.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        s.into_bytes()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        let mut lines = text.lines();
        let version: i64 = parse_line(lines.next(), "version")?;
        if version != CHECKPOINT_VERSION {
            return Err(format!("unknown version {version}"));
        }
        let count: usize = parse_line(lines.next(), "entry count")?;
        if count > CHECKPOINT_ENTRIES_MAX {
            return Err(format!(
                "{count} entries is more than {CHECKPOINT_ENTRIES_MAX}"
            ));
        }
        let mut entries: Vec<EpochEntry> = Vec::with_capacity(count);
        for i in 0..count {
            let line = lines.next().ok_or(format!("missing entry {i}"))?;
            let mut parts = line.split_whitespace();
            let epoch: i32 = parse_line(parts.next(), "epoch")?;
            let start_offset: i64 = parse_line(parts.next(), "start offset")?;
            if parts.next().is_some() {
                return Err(format!("trailing fields in entry {i}"));
            }
            if epoch < 0 || start_offset < 0 {
                return Err(format!("negative value in entry {i}"));
            }
            if let Some(p) = entries.last() {
                if epoch <= p.epoch || start_offset <= p.start_offset {
                    return Err(format!("entry {i} does not increase"));
                }
            }
            entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return Err("trailing lines".into());
        }
        Ok(LeaderEpochCache { entries })
    }
}

fn parse_line<T: std::str::FromStr>(line: Option<&str>, what: &str) -> Result<T, String> {
    let line = line.ok_or(format!("missing {what}"))?;
    line.trim()
        .parse()
        .map_err(|_| format!("bad {what} {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pairs: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(e, o) in pairs {
            assert!(c.assign(e, o));
        }
        c
    }

    #[test]
    fn given_epochs_when_asking_end_offset_should_follow_kafka() {
        let c = cache(&[(1, 0), (3, 100), (5, 250)]);
        assert_eq!(c.end_offset_for(5, 300), (5, 300));
        assert_eq!(c.end_offset_for(3, 300), (3, 250));
        assert_eq!(c.end_offset_for(4, 300), (3, 250));
        assert_eq!(c.end_offset_for(1, 300), (1, 100));
        assert_eq!(c.end_offset_for(0, 300), (0, 0));
        assert_eq!(c.end_offset_for(6, 300), (-1, -1));
        assert_eq!(c.end_offset_for(-1, 300), (-1, -1));
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 10), (-1, -1));
    }

    #[test]
    fn given_same_epoch_when_assigned_again_should_not_change() {
        let mut c = cache(&[(2, 10)]);
        assert!(!c.assign(2, 15));
        assert!(!c.assign(-1, 20));
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 10
            }]
        );
    }

    #[test]
    fn given_contradicting_assignment_should_drop_later_entries() {
        let entry = |epoch, start_offset| EpochEntry {
            epoch,
            start_offset,
        };
        let mut c = cache(&[(1, 0), (3, 100), (5, 250)]);
        assert!(c.assign(4, 120));
        assert_eq!(
            c.entries(),
            &[entry(1, 0), entry(3, 100), entry(4, 120)][..]
        );
        assert!(c.assign(2, 50));
        assert_eq!(c.entries(), &[entry(1, 0), entry(2, 50)][..]);
    }

    #[test]
    fn given_observed_batches_should_learn_only_newer_epochs() {
        let mut c = cache(&[(1, 0), (3, 100)]);
        assert!(!c.observe(1, 40), "known epoch, later batch");
        assert!(!c.observe(3, 150));
        assert!(
            !c.observe(2, 120),
            "older than the latest: the checkpoint wins"
        );
        assert!(c.observe(4, 200));
        assert!(
            !c.observe(5, 200),
            "cannot start where the previous epoch starts"
        );
        assert!(!c.observe(-1, 300));
        assert_eq!(c.latest_epoch(), Some(4));
    }

    #[test]
    fn given_truncation_should_drop_entries_at_or_after_end() {
        let mut c = cache(&[(1, 0), (3, 100), (5, 250)]);
        assert!(c.truncate_from_end(250));
        assert_eq!(c.latest_epoch(), Some(3));
        assert!(!c.truncate_from_end(250));
    }

    #[test]
    fn given_checkpoint_text_should_round_trip_and_reject_damage() {
        let c = cache(&[(1, 0), (3, 100)]);
        let bytes = c.encode();
        assert_eq!(bytes, b"0\n2\n1 0\n3 100\n");
        assert_eq!(LeaderEpochCache::decode(&bytes).unwrap(), c);
        for bad in [
            &b""[..],
            b"1\n0\n",
            b"0\n2\n1 0\n",
            b"0\n2\n3 0\n1 100\n",
            b"0\n1\n1 x\n",
            b"0\n99999999999\n",
            b"\xff",
        ] {
            assert!(LeaderEpochCache::decode(bad).is_err(), "{bad:?}");
        }
    }
}
