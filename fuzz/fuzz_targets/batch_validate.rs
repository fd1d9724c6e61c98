//! Arbitrary bytes as a produced record set: `runnel_model::batch::validate_record_set`, the
//! `Batches` iterator with every `BatchView` accessor, and the `BatchHeaderMut` rewrites.
//!
//! Each input is checked as it is and, if that differs, with every batch CRC recomputed
//! (`runnel_fuzz::fix_crcs`), to get past the CRC check with mutated headers.
//!
//! Invariants checked:
//! - nothing panics;
//! - `Batches` consumes exactly the bytes of the batches it yields (`remaining()` is the rest);
//! - a record set that validates agrees with the iterator (count, offsets, sizes, max
//!   timestamp), and still validates after the rewrites the log makes on append
//!   (`set_base_offset` with contiguous offsets, `set_partition_leader_epoch`, and under
//!   LogAppendTime `set_log_append_time`), with the rewritten fields reading back;
//! - `BatchHeaderMut::new` accepts exactly what `BatchView::parse` accepts, and
//!   `set_log_append_time` leaves a batch whose CRC verifies.

#![no_main]

use libfuzzer_sys::fuzz_target;
use runnel_model::batch::{validate_record_set, BatchHeaderMut, BatchView, Batches};

/// Reads every field, as the broker's paths do; `last_offset`/`next_offset` only where they
/// cannot overflow (an unassigned base offset is arbitrary; the log checks before it adds).
fn touch(v: &BatchView<'_>) {
    let _ = (
        v.as_bytes().len(),
        v.batch_length(),
        v.partition_leader_epoch(),
        v.stored_crc(),
        v.attributes(),
        v.compression(),
        v.is_log_append_time(),
        v.is_transactional(),
        v.is_control(),
        v.base_timestamp(),
        v.max_timestamp(),
        v.producer_id(),
        v.producer_epoch(),
        v.base_sequence(),
        v.records_count(),
        v.computed_crc(),
        v.verify_crc(),
        v.validate(),
        format!("{v:?}").len(),
    );
    assert_eq!(v.size_bytes(), 12 + v.batch_length() as usize);
    let last = v
        .base_offset()
        .checked_add(i64::from(v.last_offset_delta()));
    if last.and_then(|l| l.checked_add(1)).is_some() {
        assert_eq!(v.next_offset(), v.last_offset() + 1);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // Again with every CRC made right, so that mutated CRC-covered fields (attributes, counts,
    // timestamps, producer fields) reach the validation and rewrite paths behind the CRC.
    let mut fixed = data.to_vec();
    runnel_fuzz::fix_crcs(&mut fixed);
    if fixed != data {
        check(&fixed);
    }
});

fn check(data: &[u8]) {
    let summary = validate_record_set(data);

    let mut batches = Batches::new(data);
    let mut sizes = Vec::new();
    let mut failed = false;
    for item in &mut batches {
        match item {
            Ok(view) => {
                touch(&view);
                sizes.push(view.size_bytes());
            }
            Err(e) => {
                let _ = e.to_string();
                failed = true;
            }
        }
    }
    let consumed: usize = sizes.iter().sum();
    assert_eq!(consumed + batches.remaining().len(), data.len());
    assert_eq!(failed, consumed < data.len());

    // BatchHeaderMut on the first batch, valid or not.
    {
        let mut copy = data.to_vec();
        let parsed = BatchView::parse(data).map(|v| v.size_bytes());
        match BatchHeaderMut::new(&mut copy) {
            Ok(mut h) => {
                assert!(parsed.is_ok());
                h.set_base_offset(i64::MAX);
                h.set_partition_leader_epoch(-1);
                h.set_log_append_time(1_700_000_000_000);
                let v = BatchView::parse(&copy).expect("a rewritten header still parses");
                assert_eq!(Ok(v.size_bytes()), parsed);
                assert_eq!(v.base_offset(), i64::MAX);
                assert_eq!(v.partition_leader_epoch(), -1);
                assert_eq!(v.max_timestamp(), 1_700_000_000_000);
                assert!(v.is_log_append_time());
                v.verify_crc()
                    .expect("set_log_append_time recomputes the CRC");
            }
            Err(e) => assert_eq!(Err(e), parsed),
        }
    }

    let Ok(summary) = summary else { return };
    assert!(!failed, "a valid record set parses to its end");
    assert_eq!(summary.total_bytes, data.len());
    assert_eq!(summary.batch_count as usize, sizes.len());
    assert_eq!(
        summary.max_batch_bytes,
        sizes.iter().copied().max().unwrap_or(0)
    );
    let views: Vec<BatchView<'_>> = Batches::new(data).map(|v| v.unwrap()).collect();
    for v in &views {
        v.validate().expect("every batch of a valid set validates");
        assert_eq!(
            i64::from(v.last_offset_delta()) + 1,
            i64::from(v.records_count())
        );
    }
    let offset_count: i64 = views
        .iter()
        .map(|v| i64::from(v.last_offset_delta()) + 1)
        .sum();
    assert_eq!(summary.offset_count, offset_count);
    let max_ts = views
        .iter()
        .map(|v| v.max_timestamp())
        .max()
        .unwrap_or(-1)
        .max(-1);
    assert_eq!(summary.max_timestamp, max_ts);

    // The log's rewrites on append: contiguous base offsets, the leader epoch, and under
    // LogAppendTime the append time. The set must still validate.
    let crc = crc32c::crc32c(data);
    let log_append_time = crc & 1 == 1;
    let epoch = (crc >> 1) as i32 & i32::MAX;
    let now_ms = 1_700_000_000_000 + i64::from(crc);
    // A base offset from the input, leaving room for the set's offsets.
    let base = i64::from(crc) << 20;
    let mut copy = data.to_vec();
    let mut position = 0;
    let mut next = base;
    for &size in &sizes {
        let mut h = BatchHeaderMut::new(&mut copy[position..position + size]).expect("whole batch");
        h.set_base_offset(next);
        h.set_partition_leader_epoch(epoch);
        if log_append_time {
            h.set_log_append_time(now_ms);
        }
        let v = BatchView::parse(&copy[position..position + size]).unwrap();
        next = v.next_offset();
        position += size;
    }
    let again = validate_record_set(&copy).expect("a valid set re-validates after the rewrites");
    assert_eq!(again.batch_count, summary.batch_count);
    assert_eq!(again.offset_count, summary.offset_count);
    assert_eq!(again.total_bytes, summary.total_bytes);
    assert_eq!(again.max_batch_bytes, summary.max_batch_bytes);
    assert_eq!(
        again.max_timestamp,
        if log_append_time {
            now_ms
        } else {
            summary.max_timestamp
        }
    );
    let mut expected = base;
    for (v, orig) in Batches::new(&copy).zip(&views) {
        let v = v.unwrap();
        assert_eq!(v.base_offset(), expected);
        assert_eq!(v.partition_leader_epoch(), epoch);
        assert_eq!(v.last_offset_delta(), orig.last_offset_delta());
        assert_eq!(v.records_count(), orig.records_count());
        assert_eq!(
            v.as_bytes()[61..],
            orig.as_bytes()[61..],
            "records are untouched"
        );
        expected = v.next_offset();
    }
    assert_eq!(expected, base + offset_count);
}
