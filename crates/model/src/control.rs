//! Transaction markers: the control batches a transaction coordinator has written into every
//! partition of a transaction when it commits or aborts (KIP-98).
//!
//! A marker is a batch with the control and transactional attribute bits set, the producer's
//! id and epoch, base sequence -1, and exactly one record:
//!
//! - key (`ControlRecordType`): `version: i16 = 0`, `type: i16` (0 = abort, 1 = commit);
//! - value (`EndTransactionMarker`): `version: i16 = 0`, `coordinator_epoch: i32`.
//!
//! Brokers write markers, clients never do (Produce refuses control batches); readers skip
//! them. This module builds them and reads them back from stored bytes.

use crate::batch::{
    put_varint, varint_len, BatchError, BatchView, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES,
};

/// `ControlRecordType.ABORT`.
pub const CONTROL_TYPE_ABORT: i16 = 0;
/// `ControlRecordType.COMMIT`.
pub const CONTROL_TYPE_COMMIT: i16 = 1;

const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
/// Bytes of the control record key and of the end-transaction-marker value.
const KEY_BYTES: usize = 4;
const VALUE_BYTES: usize = 6;

/// A transaction marker's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Marker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    /// Commit (true) or abort (false).
    pub commit: bool,
}

/// The control batch carrying `marker`, base offset 0 (the log assigns offsets), leader epoch
/// 0 (the log stamps it), both timestamps `timestamp_ms`.
pub fn build_marker_batch(marker: &Marker, timestamp_ms: i64) -> Vec<u8> {
    let mut record = Vec::with_capacity(32);
    record.push(0u8); // record attributes
    put_varint(&mut record, 0); // timestamp delta
    put_varint(&mut record, 0); // offset delta
    put_varint(&mut record, KEY_BYTES as i64);
    record.extend_from_slice(&0i16.to_be_bytes());
    let kind = if marker.commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    record.extend_from_slice(&kind.to_be_bytes());
    put_varint(&mut record, VALUE_BYTES as i64);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    put_varint(&mut record, 0); // header count

    let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + 1 + record.len());
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let body_bytes = varint_len(record.len() as i64) + record.len();
    let batch_length = (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES + body_bytes) as i32;
    b.extend_from_slice(&batch_length.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    b.extend_from_slice(&(ATTR_TRANSACTIONAL | ATTR_CONTROL).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&marker.producer_id.to_be_bytes());
    b.extend_from_slice(&marker.producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // records count
    put_varint(&mut b, record.len() as i64);
    b.extend_from_slice(&record);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(b.len(), BATCH_LOG_OVERHEAD_BYTES + batch_length as usize);
    b
}

/// The marker a control batch carries. `None` for a control batch whose key is not a
/// transaction marker (Kafka has other control types, e.g. for KRaft; they are skipped) —
/// and an error for a batch that is not a well-formed control batch.
pub fn parse_marker(view: &BatchView<'_>) -> Result<Option<Marker>, BatchError> {
    let malformed = || BatchError::MalformedControl;
    if !view.is_control() || view.records_count() != 1 {
        return Err(malformed());
    }
    let compressed = !matches!(view.compression(), Ok(crate::batch::Compression::None));
    if compressed {
        return Err(malformed());
    }
    let body = &view.as_bytes()[BATCH_HEADER_BYTES..];
    let mut r = Reader { bytes: body, at: 0 };
    let length = r.varint().ok_or_else(malformed)?;
    if length < 0 || length as usize != body.len() - r.at {
        return Err(malformed());
    }
    r.byte().ok_or_else(malformed)?; // attributes
    r.varint().ok_or_else(malformed)?; // timestamp delta
    r.varint().ok_or_else(malformed)?; // offset delta
    let key_len = r.varint().ok_or_else(malformed)?;
    if key_len < KEY_BYTES as i64 {
        return Err(malformed());
    }
    let key = r.take(key_len as usize).ok_or_else(malformed)?;
    let kind = i16::from_be_bytes([key[2], key[3]]);
    if kind != CONTROL_TYPE_ABORT && kind != CONTROL_TYPE_COMMIT {
        return Ok(None);
    }
    let value_len = r.varint().ok_or_else(malformed)?;
    if value_len < VALUE_BYTES as i64 {
        return Err(malformed());
    }
    let value = r.take(value_len as usize).ok_or_else(malformed)?;
    Ok(Some(Marker {
        producer_id: view.producer_id(),
        producer_epoch: view.producer_epoch(),
        coordinator_epoch: i32::from_be_bytes([value[2], value[3], value[4], value[5]]),
        commit: kind == CONTROL_TYPE_COMMIT,
    }))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// A zig-zag varint of at most 10 bytes.
    fn varint(&mut self) -> Option<i64> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn given_marker_when_built_should_validate_and_parse_back() {
        for commit in [true, false] {
            let marker = Marker {
                producer_id: 4000,
                producer_epoch: 3,
                coordinator_epoch: 7,
                commit,
            };
            let bytes = build_marker_batch(&marker, 1_700_000_000_000);
            let view = BatchView::parse(&bytes).unwrap();
            view.validate().unwrap();
            assert!(view.is_control() && view.is_transactional());
            assert_eq!(view.base_sequence(), -1);
            assert_eq!(parse_marker(&view).unwrap(), Some(marker));
        }
    }

    #[test]
    fn given_data_batch_when_parsed_as_marker_should_refuse() {
        let bytes = crate::batch::testing::simple_batch(0, 1);
        let view = BatchView::parse(&bytes).unwrap();
        assert_eq!(parse_marker(&view), Err(BatchError::MalformedControl));
    }

    proptest! {
        #[test]
        fn varint_len_matches_what_put_varint_writes(v in any::<i64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(varint_len(v), out.len());
        }

        #[test]
        fn any_marker_round_trips(pid in 0i64..i64::MAX, epoch in 0i16..i16::MAX,
                                  coordinator_epoch in any::<i32>(), commit in any::<bool>()) {
            let marker = Marker { producer_id: pid, producer_epoch: epoch, coordinator_epoch, commit };
            let bytes = build_marker_batch(&marker, 0);
            let view = BatchView::parse(&bytes).unwrap();
            prop_assert!(view.validate().is_ok());
            prop_assert_eq!(parse_marker(&view).unwrap(), Some(marker));
        }
    }
}
