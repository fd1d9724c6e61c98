//! Responses queued for a connection without copying the record bytes they carry.
//!
//! A Fetch response is mostly record batches read from the log. Encoding it into one buffer
//! copies every batch once more before the socket copies it again; the read profile showed
//! that copy (and the fresh pages it touches) as a large share of the broker's CPU. A
//! [`ResponseRope`] keeps the encoded fields in one reused buffer and the large `records`
//! values as the [`Bytes`] the log returned (shared, not copied), in order, for a vectored
//! write.
//!
//! The generated encoders write a `records` value with one `put_slice` of the whole value;
//! [`encode_response_shared`] encodes through a [`BufMut`] that recognises exactly those
//! slices (same address and length as one of the response's own `records` values) and
//! queues the value instead of copying it. Any other slice is copied as usual, so the bytes
//! on the wire are the same as [`crate::response::encode_response`]'s (a test checks it).

use std::io::IoSlice;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

use crate::response::EncodeError;

/// `records` values at least this large are queued, not copied.
pub const SHARED_BYTES_MIN: usize = 8 * 1024;

/// Encoded responses: bytes in a reused buffer, with shared values between them.
#[derive(Debug, Default)]
pub struct ResponseRope {
    inline: BytesMut,
    /// `(position in inline, value)`: each value comes after the inline bytes before
    /// that position and before those after it. Positions never decrease.
    shared: Vec<(usize, Bytes)>,
    shared_bytes: usize,
}

impl ResponseRope {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes queued in all.
    pub fn len(&self) -> usize {
        self.inline.len() + self.shared_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets what is queued; keeps the buffer for the next responses.
    pub fn clear(&mut self) {
        self.inline.clear();
        self.shared.clear();
        self.shared_bytes = 0;
    }

    /// The buffer that encoders without shared values append to (inline bytes are queued
    /// after everything already queued).
    pub fn inline_mut(&mut self) -> &mut BytesMut {
        &mut self.inline
    }

    /// The queued parts in order (some may be empty).
    fn parts(&self) -> impl Iterator<Item = &[u8]> {
        let mut inline_at = 0usize;
        self.shared
            .iter()
            .flat_map(move |(position, value)| {
                let before = &self.inline[inline_at..*position];
                inline_at = *position;
                [before, &value[..]]
            })
            .chain(std::iter::once(
                &self.inline[self.shared.last().map_or(0, |(p, _)| *p)..],
            ))
    }

    /// The queued bytes in order, skipping the first `skip_bytes`; at most `max` slices.
    pub fn io_slices(&self, skip_bytes: usize, max: usize) -> Vec<IoSlice<'_>> {
        let mut slices = Vec::with_capacity(max.min(2 * self.shared.len() + 1));
        let mut skip = skip_bytes;
        for part in self.parts() {
            if slices.len() == max {
                break;
            }
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            slices.push(IoSlice::new(&part[skip..]));
            skip = 0;
        }
        slices
    }

    /// The queued bytes as one vector (for tests and small responses).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        for s in self.io_slices(0, usize::MAX) {
            v.extend_from_slice(&s);
        }
        v
    }
}

/// The `records` values of a response that are worth sharing.
fn shareable_values(body: &ResponseKind) -> Vec<Bytes> {
    match body {
        ResponseKind::Fetch(r) => r
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.records.as_ref())
            .filter(|b| b.len() >= SHARED_BYTES_MIN)
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

/// Appends one whole response frame to `rope`, like
/// [`crate::response::encode_response`], queueing large `records` values instead of
/// copying them. On error `rope` is left as it was.
pub fn encode_response_shared(
    rope: &mut ResponseRope,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<(), EncodeError> {
    let values = shareable_values(body);
    // Only Fetch carries values worth sharing.
    let fetch = match body {
        ResponseKind::Fetch(fetch) if !values.is_empty() => fetch,
        _ => {
            return crate::response::encode_response(
                &mut rope.inline,
                api_key,
                api_version,
                correlation_id,
                body,
            )
        }
    };
    let err = |reason: String| EncodeError {
        api_key,
        api_version,
        reason,
    };
    let inline_start = rope.inline.len();
    let shared_count = rope.shared.len();
    let len_before = rope.len();
    let header_version = api_key.response_header_version(api_version);
    let mut buf = SharingBuf {
        rope: &mut *rope,
        values: &values,
    };
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let result = header
        .encode(&mut buf, header_version)
        .and_then(|_| fetch.encode(&mut buf, api_version));
    let undo = |rope: &mut ResponseRope| {
        rope.inline.truncate(inline_start);
        for (_, value) in rope.shared.drain(shared_count..) {
            rope.shared_bytes -= value.len();
        }
    };
    if let Err(e) = result {
        undo(rope);
        return Err(err(e.to_string()));
    }
    let size = rope.len() - len_before - 4;
    let Ok(size) = i32::try_from(size) else {
        undo(rope);
        return Err(err(format!("response of {size} bytes is too large")));
    };
    rope.inline[inline_start..inline_start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// The [`BufMut`] the encoder writes to: inline bytes, except the values it recognises.
struct SharingBuf<'a> {
    rope: &'a mut ResponseRope,
    values: &'a [Bytes],
}

impl SharingBuf<'_> {
    /// The inline range behind the rope's offsets `r`; only the inline bytes after the last
    /// shared value are addressable (the generated message encoders never seek back).
    fn inline_range(&self, r: Range<usize>) -> Range<usize> {
        let last_shared = self.rope.shared.last().map_or(0, |(p, _)| *p);
        let start = r.start - self.rope.shared_bytes;
        assert!(
            r.start >= self.rope.shared_bytes && start >= last_shared,
            "seek before a shared value"
        );
        start..r.end - self.rope.shared_bytes
    }
}

// SAFETY: every method delegates to the inner `BytesMut`, which upholds `BufMut`'s contract;
// `put_slice` either delegates or appends nothing to the buffer.
unsafe impl BufMut for SharingBuf<'_> {
    fn remaining_mut(&self) -> usize {
        self.rope.inline.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's guarantee (the next `cnt` bytes of `chunk_mut` are
        // initialised) is passed on unchanged.
        unsafe { self.rope.inline.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.rope.inline.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SHARED_BYTES_MIN {
            let found = self
                .values
                .iter()
                .find(|v| v.as_ptr() == src.as_ptr() && v.len() == src.len());
            if let Some(value) = found {
                self.rope
                    .shared
                    .push((self.rope.inline.len(), value.clone()));
                self.rope.shared_bytes += value.len();
                return;
            }
        }
        self.rope.inline.put_slice(src);
    }
}

impl ByteBufMut for SharingBuf<'_> {
    fn offset(&self) -> usize {
        self.rope.len()
    }

    fn seek(&mut self, offset: usize) {
        let r = self.inline_range(offset..offset);
        self.rope.inline.resize(r.start, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let r = self.inline_range(r);
        &mut self.rope.inline[r]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn fetch_response(values: &[Bytes]) -> ResponseKind {
        let partitions = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_records(Some(v.clone()))
            })
            .collect();
        ResponseKind::Fetch(FetchResponse::default().with_responses(
            vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions)],
        ))
    }

    fn value(len: usize, seed: u8) -> Bytes {
        Bytes::from(
            (0..len)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect::<Vec<u8>>(),
        )
    }

    #[test]
    fn given_fetch_response_with_large_records_should_encode_the_same_bytes_without_copying_them() {
        let values = [
            value(100, 1),
            value(20_000, 2),
            value(SHARED_BYTES_MIN, 3),
            value(0, 4),
        ];
        let body = fetch_response(&values);
        for version in [4i16, 11, 12, 16] {
            let mut plain = BytesMut::new();
            crate::response::encode_response(&mut plain, ApiKey::Fetch, version, 7, &body).unwrap();
            let mut rope = ResponseRope::new();
            // Something queued before: the frame is appended after it.
            rope.inline_mut().put_slice(b"before");
            encode_response_shared(&mut rope, ApiKey::Fetch, version, 7, &body).unwrap();
            let mut expected = b"before".to_vec();
            expected.extend_from_slice(&plain);
            assert_eq!(rope.to_vec(), expected, "v{version}");
            assert_eq!(rope.len(), expected.len());
            assert_eq!(
                rope.shared.len(),
                2,
                "the two values of 8 KiB or more are shared"
            );
            assert!(rope.inline.len() < 1024);
        }
    }

    #[test]
    fn given_partial_writes_io_slices_should_resume_at_any_byte() {
        let values = [value(10_000, 5), value(9_000, 6)];
        let mut rope = ResponseRope::new();
        encode_response_shared(&mut rope, ApiKey::Fetch, 12, 1, &fetch_response(&values)).unwrap();
        encode_response_shared(&mut rope, ApiKey::Fetch, 12, 2, &fetch_response(&values)).unwrap();
        let whole = rope.to_vec();
        for skip in [
            0,
            1,
            50,
            10_000,
            10_100,
            19_000,
            whole.len() - 1,
            whole.len(),
        ] {
            let rest: Vec<u8> = rope
                .io_slices(skip, usize::MAX)
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            assert_eq!(rest, whole[skip..], "skip {skip}");
        }
        assert!(rope.io_slices(0, 2).len() == 2);
        rope.clear();
        assert!(rope.is_empty() && rope.io_slices(0, 8).is_empty());
    }

    #[test]
    fn given_response_without_large_values_should_be_all_inline() {
        let body = fetch_response(&[value(10, 1)]);
        let mut rope = ResponseRope::new();
        encode_response_shared(&mut rope, ApiKey::Fetch, 12, 3, &body).unwrap();
        assert!(rope.shared.is_empty());
        let mut plain = BytesMut::new();
        crate::response::encode_response(&mut plain, ApiKey::Fetch, 12, 3, &body).unwrap();
        assert_eq!(rope.to_vec(), plain.to_vec());
    }
}
