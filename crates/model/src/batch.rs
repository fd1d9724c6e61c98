//! A read-only view of Kafka record batches (magic 2) and their validation.
//!
//! The broker never decodes records on the produce path: it walks batch headers, checks
//! lengths and the CRC-32C, and stores the bytes as the producer sent them. Only the base
//! offset (and, under LogAppendTime, the max timestamp and the timestamp-type attribute)
//! is rewritten in place; the CRC is recomputed after such a rewrite.
//!
//! Layout of a v2 batch header (all big-endian):
//!
//! | field                 | offset | size |
//! |-----------------------|--------|------|
//! | base_offset           | 0      | 8    |
//! | batch_length          | 8      | 4    |
//! | partition_leader_epoch| 12     | 4    |
//! | magic                 | 16     | 1    |
//! | crc                   | 17     | 4    |
//! | attributes            | 21     | 2    |
//! | last_offset_delta     | 23     | 4    |
//! | base_timestamp        | 27     | 8    |
//! | max_timestamp         | 35     | 8    |
//! | producer_id           | 43     | 8    |
//! | producer_epoch        | 51     | 2    |
//! | base_sequence         | 53     | 4    |
//! | records_count         | 57     | 4    |
//!
//! `batch_length` counts the bytes after the `batch_length` field itself, so a batch occupies
//! `12 + batch_length` bytes. The CRC covers everything from `attributes` to the end.

use thiserror::Error;

/// Size of the fixed v2 batch header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Bytes before `batch_length` is counted (`base_offset` + `batch_length`).
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// Offset of the first byte the CRC covers.
const CRC_START: usize = 21;

const OFF_BASE_OFFSET: usize = 0;
const OFF_BATCH_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORDS_COUNT: usize = 57;

/// Attribute bits.
const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Why a batch (or a sequence of batches) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("batch truncated: need {needed_bytes} bytes, have {available_bytes}")]
    Truncated {
        needed_bytes: usize,
        available_bytes: usize,
    },
    #[error("invalid batch length {batch_length}")]
    InvalidLength { batch_length: i32 },
    #[error("unsupported magic {magic}")]
    UnsupportedMagic { magic: i8 },
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("invalid record count {records_count} for last offset delta {last_offset_delta}")]
    InvalidRecordCount {
        records_count: i32,
        last_offset_delta: i32,
    },
    #[error("unknown compression codec {codec}")]
    UnknownCompression { codec: i16 },
    #[error("empty record set")]
    Empty,
    #[error("malformed control batch")]
    MalformedControl,
}

/// Compression codec from the low three attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        match attributes & ATTR_COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(BatchError::UnknownCompression { codec }),
        }
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A borrowed view of exactly one batch (header and records), `12 + batch_length` bytes.
#[derive(Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

impl std::fmt::Debug for BatchView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchView")
            .field("base_offset", &self.base_offset())
            .field("last_offset_delta", &self.last_offset_delta())
            .field("size_bytes", &self.size_bytes())
            .finish()
    }
}

impl<'a> BatchView<'a> {
    /// Reads the header of the batch at the start of `bytes` and checks that the whole
    /// batch is present. Does not check the CRC (see [`BatchView::verify_crc`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_LOG_OVERHEAD_BYTES {
            return Err(BatchError::Truncated {
                needed_bytes: BATCH_LOG_OVERHEAD_BYTES,
                available_bytes: bytes.len(),
            });
        }
        let batch_length = be_i32(bytes, OFF_BATCH_LENGTH);
        let min_length = (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) as i32;
        if batch_length < min_length {
            return Err(BatchError::InvalidLength { batch_length });
        }
        let total = BATCH_LOG_OVERHEAD_BYTES + batch_length as usize;
        if bytes.len() < total {
            return Err(BatchError::Truncated {
                needed_bytes: total,
                available_bytes: bytes.len(),
            });
        }
        let magic = bytes[OFF_MAGIC] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        Ok(BatchView {
            bytes: &bytes[..total],
        })
    }

    /// The batch's bytes, exactly as stored.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    pub fn size_bytes(&self) -> usize {
        self.bytes.len()
    }
    pub fn base_offset(&self) -> i64 {
        be_i64(self.bytes, OFF_BASE_OFFSET)
    }
    pub fn batch_length(&self) -> i32 {
        be_i32(self.bytes, OFF_BATCH_LENGTH)
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        be_i32(self.bytes, OFF_LEADER_EPOCH)
    }
    pub fn stored_crc(&self) -> u32 {
        be_u32(self.bytes, OFF_CRC)
    }
    pub fn attributes(&self) -> i16 {
        be_i16(self.bytes, OFF_ATTRIBUTES)
    }
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes())
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & ATTR_TIMESTAMP_TYPE != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & ATTR_CONTROL != 0
    }
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(self.bytes, OFF_LAST_OFFSET_DELTA)
    }
    /// `base_offset + last_offset_delta`, saturating: the header may come from damaged bytes
    /// on disk, and arithmetic on it must not panic (a fuzzer found a base offset of
    /// `i64::MAX` in a trusted segment).
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }
    /// The offset after this batch (saturating, like [`BatchView::last_offset`]).
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    pub fn base_timestamp(&self) -> i64 {
        be_i64(self.bytes, OFF_BASE_TIMESTAMP)
    }
    pub fn max_timestamp(&self) -> i64 {
        be_i64(self.bytes, OFF_MAX_TIMESTAMP)
    }
    pub fn producer_id(&self) -> i64 {
        be_i64(self.bytes, OFF_PRODUCER_ID)
    }
    pub fn producer_epoch(&self) -> i16 {
        be_i16(self.bytes, OFF_PRODUCER_EPOCH)
    }
    pub fn base_sequence(&self) -> i32 {
        be_i32(self.bytes, OFF_BASE_SEQUENCE)
    }
    pub fn records_count(&self) -> i32 {
        be_i32(self.bytes, OFF_RECORDS_COUNT)
    }

    /// CRC-32C over `attributes..end`.
    pub fn computed_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[CRC_START..])
    }

    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let stored = self.stored_crc();
        let computed = self.computed_crc();
        if stored != computed {
            return Err(BatchError::CrcMismatch { stored, computed });
        }
        Ok(())
    }

    /// Full check of one batch as a producer sends it: CRC, compression codec, and a
    /// record count that agrees with the last offset delta.
    pub fn validate(&self) -> Result<(), BatchError> {
        self.verify_crc()?;
        self.compression()?;
        let records_count = self.records_count();
        let last_offset_delta = self.last_offset_delta();
        if records_count <= 0 || last_offset_delta < 0 || records_count - 1 != last_offset_delta {
            return Err(BatchError::InvalidRecordCount {
                records_count,
                last_offset_delta,
            });
        }
        Ok(())
    }
}

/// Iterates over the batches in `bytes`. Yields an error (and stops) at the first batch
/// that is truncated or malformed.
pub struct Batches<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Batches<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Batches {
            rest: bytes,
            failed: false,
        }
    }
    /// Bytes not yet consumed.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<BatchView<'a>, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match BatchView::parse(self.rest) {
            Ok(view) => {
                self.rest = &self.rest[view.size_bytes()..];
                Some(Ok(view))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// What the produce path learns from validating a record set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordSetSummary {
    pub batch_count: u32,
    /// Number of offsets the record set takes (sum of `last_offset_delta + 1`).
    pub offset_count: i64,
    pub max_timestamp: i64,
    /// Size of the largest batch, for `max.message.bytes`.
    pub max_batch_bytes: usize,
    pub total_bytes: usize,
}

/// Validates every batch of a produced record set: headers, lengths, CRCs, record counts,
/// and that nothing trails the last batch.
pub fn validate_record_set(bytes: &[u8]) -> Result<RecordSetSummary, BatchError> {
    if bytes.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut summary = RecordSetSummary {
        batch_count: 0,
        offset_count: 0,
        max_timestamp: -1,
        max_batch_bytes: 0,
        total_bytes: bytes.len(),
    };
    for view in Batches::new(bytes) {
        let view = view?;
        view.validate()?;
        summary.batch_count += 1;
        summary.offset_count += i64::from(view.last_offset_delta()) + 1;
        summary.max_timestamp = summary.max_timestamp.max(view.max_timestamp());
        summary.max_batch_bytes = summary.max_batch_bytes.max(view.size_bytes());
    }
    Ok(summary)
}

/// Mutable access to one batch's header, for the few in-place rewrites the broker makes.
pub struct BatchHeaderMut<'a> {
    bytes: &'a mut [u8],
}

impl<'a> BatchHeaderMut<'a> {
    /// `bytes` must hold exactly one whole batch (as checked by [`BatchView::parse`]).
    pub fn new(bytes: &'a mut [u8]) -> Result<Self, BatchError> {
        let len = BatchView::parse(bytes)?.size_bytes();
        Ok(BatchHeaderMut {
            bytes: &mut bytes[..len],
        })
    }

    /// Sets the base offset. Not covered by the CRC.
    pub fn set_base_offset(&mut self, base_offset: i64) {
        self.bytes[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8]
            .copy_from_slice(&base_offset.to_be_bytes());
    }

    /// Sets the partition leader epoch. Not covered by the CRC.
    pub fn set_partition_leader_epoch(&mut self, epoch: i32) {
        self.bytes[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
    }

    /// Marks the batch LogAppendTime with the given time as max timestamp, and recomputes
    /// the CRC (both fields are covered by it).
    pub fn set_log_append_time(&mut self, timestamp_ms: i64) {
        let attributes = be_i16(self.bytes, OFF_ATTRIBUTES) | ATTR_TIMESTAMP_TYPE;
        self.bytes[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        self.bytes[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8]
            .copy_from_slice(&timestamp_ms.to_be_bytes());
        let crc = crc32c::crc32c(&self.bytes[CRC_START..]);
        self.bytes[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Appends `v` as a zig-zag varint (the record fields' encoding).
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
}

/// Bytes `put_varint` writes for `v`.
pub(crate) fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - z.leading_zeros() as usize).max(1).div_ceil(7)
}

/// Test support: builds a valid uncompressed batch with `count` records carrying the given
/// value bytes. Intended for tests of this workspace, not for producers.
pub mod testing {
    use super::*;

    /// A record's key and value; `None` is a null key or value.
    pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    /// One batch of the given records. Headers are empty.
    pub fn build_batch(base_offset: i64, timestamp_ms: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
        assert!(!records.is_empty(), "a batch holds at least one record");
        let mut body = Vec::new();
        for (i, (key, value)) in records.iter().enumerate() {
            let mut rec = Vec::new();
            rec.push(0u8); // attributes
            put_varint(&mut rec, 0); // timestamp delta
            put_varint(&mut rec, i as i64); // offset delta
            match key {
                Some(k) => {
                    put_varint(&mut rec, k.len() as i64);
                    rec.extend_from_slice(k);
                }
                None => put_varint(&mut rec, -1),
            }
            match value {
                Some(v) => {
                    put_varint(&mut rec, v.len() as i64);
                    rec.extend_from_slice(v);
                }
                None => put_varint(&mut rec, -1),
            }
            put_varint(&mut rec, 0); // header count
            put_varint(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
        let count = records.len() as i32;
        let mut b = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
        b.extend_from_slice(&base_offset.to_be_bytes());
        let batch_length = (BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES + body.len()) as i32;
        b.extend_from_slice(&batch_length.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        b.push(2); // magic
        b.extend_from_slice(&0u32.to_be_bytes()); // crc placeholder
        b.extend_from_slice(&0i16.to_be_bytes()); // attributes
        b.extend_from_slice(&(count - 1).to_be_bytes()); // last offset delta
        b.extend_from_slice(&timestamp_ms.to_be_bytes());
        b.extend_from_slice(&timestamp_ms.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
        b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&body);
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// A batch of `count` records with small distinct values.
    pub fn simple_batch(base_offset: i64, count: usize) -> Vec<u8> {
        let values: Vec<Vec<u8>> = (0..count).map(|i| format!("v{i}").into_bytes()).collect();
        let recs: Vec<KeyValue<'_>> = values.iter().map(|v| (None, Some(v.as_slice()))).collect();
        build_batch(base_offset, 1_700_000_000_000, &recs)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn given_built_batch_when_validated_should_pass_and_report_counts() {
        let b = simple_batch(0, 3);
        let s = validate_record_set(&b).unwrap();
        assert_eq!(s.batch_count, 1);
        assert_eq!(s.offset_count, 3);
        assert_eq!(s.total_bytes, b.len());
    }

    #[test]
    fn given_flipped_payload_bit_when_validated_should_report_crc_mismatch() {
        let mut b = simple_batch(0, 3);
        let last = b.len() - 1;
        b[last] ^= 0x01;
        assert!(matches!(
            validate_record_set(&b),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn given_base_offset_rewrite_should_keep_crc_valid() {
        let mut b = simple_batch(0, 2);
        BatchHeaderMut::new(&mut b).unwrap().set_base_offset(1234);
        let v = BatchView::parse(&b).unwrap();
        assert_eq!(v.base_offset(), 1234);
        assert_eq!(v.last_offset(), 1235);
        v.validate().unwrap();
    }

    #[test]
    fn given_log_append_time_rewrite_should_recompute_crc() {
        let mut b = simple_batch(0, 2);
        BatchHeaderMut::new(&mut b).unwrap().set_log_append_time(42);
        let v = BatchView::parse(&b).unwrap();
        assert!(v.is_log_append_time());
        assert_eq!(v.max_timestamp(), 42);
        v.validate().unwrap();
    }

    #[test]
    fn given_wrong_magic_should_reject() {
        let mut b = simple_batch(0, 1);
        b[16] = 1;
        assert_eq!(
            BatchView::parse(&b).unwrap_err(),
            BatchError::UnsupportedMagic { magic: 1 }
        );
    }

    #[test]
    fn given_record_count_disagreeing_with_delta_should_reject() {
        let mut b = simple_batch(0, 2);
        b[57..61].copy_from_slice(&5i32.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_record_set(&b),
            Err(BatchError::InvalidRecordCount { .. })
        ));
    }

    #[test]
    fn given_trailing_garbage_should_reject() {
        let mut b = simple_batch(0, 2);
        b.extend_from_slice(&[0, 0, 0]);
        assert!(matches!(
            validate_record_set(&b),
            Err(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn given_empty_record_set_should_reject() {
        assert_eq!(validate_record_set(&[]), Err(BatchError::Empty));
    }

    #[test]
    fn given_negative_batch_length_should_reject_without_panic() {
        let mut b = simple_batch(0, 1);
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            BatchView::parse(&b),
            Err(BatchError::InvalidLength { .. })
        ));
    }

    #[test]
    fn given_base_offset_near_i64_max_should_not_overflow() {
        let mut b = simple_batch(0, 3);
        b[0..8].copy_from_slice(&i64::MAX.to_be_bytes());
        let v = BatchView::parse(&b).unwrap();
        assert_eq!(v.last_offset(), i64::MAX);
        assert_eq!(v.next_offset(), i64::MAX);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = validate_record_set(&bytes);
            for b in Batches::new(&bytes) { let _ = b; }
        }

        #[test]
        fn any_truncation_of_a_valid_set_is_rejected(cut in 1usize..60) {
            let mut b = simple_batch(0, 4);
            b.extend_from_slice(&simple_batch(4, 2));
            let len = b.len() - cut;
            prop_assert!(validate_record_set(&b[..len]).is_err());
        }
    }
}
