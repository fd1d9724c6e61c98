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
//!
//! A value may also come with the [`FileSpan`]s that hold the same bytes (the log files it
//! was read from): the connection then sends those with `sendfile(2)` ([`WriteStep::File`]),
//! and the socket takes the page-cache pages without another copy. The value stays queued,
//! so a connection whose span cannot send (unsupported, or the file no longer has the
//! bytes) writes the rest from memory instead.

use std::fmt::Debug;
use std::io::{self, IoSlice};
use std::ops::Range;
use std::os::fd::BorrowedFd;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

use crate::response::EncodeError;

/// `records` values at least this large are queued, not copied.
pub const SHARED_BYTES_MIN: usize = 8 * 1024;

/// Bytes of a file that a connection can send to its socket without copying them.
pub trait FileSpan: Debug + Send + Sync {
    fn len_bytes(&self) -> usize;
    /// Sends up to `len_bytes` of the span's bytes, starting `skip_bytes` into it, to `out`;
    /// how many were sent (0: the file no longer holds them). `WouldBlock` when the
    /// non-blocking `out` takes nothing now.
    fn send_to(
        &self,
        out: BorrowedFd<'_>,
        skip_bytes: usize,
        len_bytes: usize,
    ) -> io::Result<usize>;
}

/// A `records` value of a response and the file spans that hold the same bytes, in order.
#[derive(Debug)]
pub struct FileBacked {
    pub value: Bytes,
    pub spans: Vec<Box<dyn FileSpan>>,
}

/// A shared value in a rope.
#[derive(Debug)]
struct Shared {
    /// Position in `inline`: the value comes after the inline bytes before it.
    at: usize,
    value: Bytes,
    /// Empty, or spans whose lengths add up to the value's.
    spans: Vec<Box<dyn FileSpan>>,
}

/// What to write next ([`ResponseRope::next_write`]).
#[derive(Debug)]
pub enum WriteStep<'a> {
    /// Bytes in memory, for one vectored write.
    Memory(Vec<IoSlice<'a>>),
    /// Bytes to send from a file ([`FileSpan::send_to`]).
    File {
        span: &'a dyn FileSpan,
        skip_bytes: usize,
        len_bytes: usize,
    },
}

/// One part of the queued bytes, in order.
enum Part<'a> {
    Memory(&'a [u8]),
    FileBacked(&'a [u8], &'a [Box<dyn FileSpan>]),
}

impl<'a> Part<'a> {
    fn bytes(&self) -> &'a [u8] {
        match self {
            Part::Memory(b) | Part::FileBacked(b, _) => b,
        }
    }
}

/// Encoded responses: bytes in a reused buffer, with shared values between them.
#[derive(Debug, Default)]
pub struct ResponseRope {
    inline: BytesMut,
    /// In order of their positions, which never decrease.
    shared: Vec<Shared>,
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
    fn parts(&self) -> impl Iterator<Item = Part<'_>> {
        let mut inline_at = 0usize;
        self.shared
            .iter()
            .flat_map(move |shared| {
                let before = Part::Memory(&self.inline[inline_at..shared.at]);
                inline_at = shared.at;
                let value = if shared.spans.is_empty() {
                    Part::Memory(&shared.value[..])
                } else {
                    Part::FileBacked(&shared.value[..], &shared.spans[..])
                };
                [before, value]
            })
            .chain(std::iter::once(Part::Memory(
                &self.inline[self.shared.last().map_or(0, |s| s.at)..],
            )))
    }

    /// The queued bytes in order, skipping the first `skip_bytes`; at most `max` slices
    /// (all from memory).
    pub fn io_slices(&self, skip_bytes: usize, max: usize) -> Vec<IoSlice<'_>> {
        match self.next_write(skip_bytes, max, false) {
            Some(WriteStep::Memory(slices)) => slices,
            Some(WriteStep::File { .. }) | None => Vec::new(),
        }
    }

    /// What to write after the first `skip_bytes`: up to `slices_max` slices of memory up
    /// to the next file-backed value, or (with `from_files`, when `skip_bytes` is inside a
    /// file-backed value) a stretch of one of its spans. `None` once everything is written.
    pub fn next_write(
        &self,
        skip_bytes: usize,
        slices_max: usize,
        from_files: bool,
    ) -> Option<WriteStep<'_>> {
        let mut slices = Vec::with_capacity(slices_max.min(2 * self.shared.len() + 1));
        let mut skip = skip_bytes;
        for part in self.parts() {
            let bytes = part.bytes();
            if skip >= bytes.len() {
                skip -= bytes.len();
                continue;
            }
            if let (true, Part::FileBacked(_, spans)) = (from_files, &part) {
                if !slices.is_empty() {
                    break;
                }
                // The spans add up to the value (checked when queued), so one holds `skip`.
                let mut within = skip;
                for span in spans.iter() {
                    let len = span.len_bytes();
                    if within < len {
                        return Some(WriteStep::File {
                            span: &**span,
                            skip_bytes: within,
                            len_bytes: len - within,
                        });
                    }
                    within -= len;
                }
                unreachable!("spans shorter than their value");
            }
            if slices.len() == slices_max {
                break;
            }
            slices.push(IoSlice::new(&bytes[skip..]));
            skip = 0;
        }
        (!slices.is_empty()).then_some(WriteStep::Memory(slices))
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
/// copying them, with the file spans `files` gives for them (values are matched by
/// address). On error `rope` is left as it was.
pub fn encode_response_shared(
    rope: &mut ResponseRope,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
    mut files: Vec<FileBacked>,
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
    // Spans that do not add up to their value are not used (the value is sent from memory).
    files.retain(|f| f.spans.iter().map(|s| s.len_bytes()).sum::<usize>() == f.value.len());
    let mut buf = SharingBuf {
        rope: &mut *rope,
        values: &values,
        files: &mut files,
    };
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let result = header
        .encode(&mut buf, header_version)
        .and_then(|_| fetch.encode(&mut buf, api_version));
    let undo = |rope: &mut ResponseRope| {
        rope.inline.truncate(inline_start);
        for shared in rope.shared.drain(shared_count..) {
            rope.shared_bytes -= shared.value.len();
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
    files: &'a mut Vec<FileBacked>,
}

impl SharingBuf<'_> {
    /// The inline range behind the rope's offsets `r`; only the inline bytes after the last
    /// shared value are addressable (the generated message encoders never seek back).
    fn inline_range(&self, r: Range<usize>) -> Range<usize> {
        let last_shared = self.rope.shared.last().map_or(0, |s| s.at);
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
                let same = |v: &Bytes| v.as_ptr() == src.as_ptr() && v.len() == src.len();
                let spans = match self.files.iter().position(|f| same(&f.value)) {
                    Some(i) => self.files.swap_remove(i).spans,
                    None => Vec::new(),
                };
                self.rope.shared.push(Shared {
                    at: self.rope.inline.len(),
                    value: value.clone(),
                    spans,
                });
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

    /// Appends a Fetch v12 response carrying `values` to `rope`.
    fn encode_fetch(
        rope: &mut ResponseRope,
        correlation_id: i32,
        values: &[Bytes],
        files: Vec<FileBacked>,
    ) {
        let body = fetch_response(values);
        encode_response_shared(rope, ApiKey::Fetch, 12, correlation_id, &body, files).unwrap();
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
            encode_response_shared(&mut rope, ApiKey::Fetch, version, 7, &body, Vec::new())
                .unwrap();
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
        encode_fetch(&mut rope, 1, &values, Vec::new());
        encode_fetch(&mut rope, 2, &values, Vec::new());
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

    /// A span whose bytes are never sent (the tests walk the rope as a connection would).
    #[derive(Debug)]
    struct TestSpan(usize);

    impl FileSpan for TestSpan {
        fn len_bytes(&self) -> usize {
            self.0
        }
        fn send_to(&self, _: BorrowedFd<'_>, _: usize, _: usize) -> io::Result<usize> {
            unreachable!("the tests do not send")
        }
    }

    fn spans(lens: &[usize]) -> Vec<Box<dyn FileSpan>> {
        lens.iter()
            .map(|&len| Box::new(TestSpan(len)) as Box<dyn FileSpan>)
            .collect()
    }

    /// Walks `rope` as a connection does, taking at most `file_piece_bytes` per send from a
    /// file; returns `(position, length)` of each send from a file.
    fn file_sends(rope: &ResponseRope, file_piece_bytes: usize) -> Vec<(usize, usize)> {
        let mut at = 0;
        let mut sends = Vec::new();
        while let Some(step) = rope.next_write(at, 64, true) {
            match step {
                WriteStep::Memory(slices) => {
                    at += slices.iter().map(|s| s.len()).sum::<usize>();
                }
                WriteStep::File {
                    span,
                    skip_bytes,
                    len_bytes,
                } => {
                    assert_eq!(
                        skip_bytes + len_bytes,
                        span.len_bytes(),
                        "to the span's end"
                    );
                    let n = len_bytes.min(file_piece_bytes);
                    sends.push((at, n));
                    at += n;
                }
            }
        }
        assert_eq!(at, rope.len(), "everything written once");
        sends
    }

    fn position_of(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("value in the frame")
    }

    #[test]
    fn given_file_backed_values_next_write_should_send_them_from_their_spans_and_the_rest_from_memory(
    ) {
        let values = [value(10_000, 1), value(100, 2), value(9_000, 3)];
        let files = vec![
            FileBacked {
                value: values[2].clone(),
                spans: spans(&[9_000]),
            },
            FileBacked {
                value: values[0].clone(),
                spans: spans(&[4_000, 6_000]),
            },
        ];
        let mut rope = ResponseRope::new();
        rope.inline_mut().put_slice(b"before");
        encode_fetch(&mut rope, 1, &values, files);
        let whole = rope.to_vec();
        let (p0, p2) = (
            position_of(&whole, &values[0]),
            position_of(&whole, &values[2]),
        );
        // Sends stop at each span's end and resume inside a span after a partial send.
        let expected = vec![
            (p0, 3_000),
            (p0 + 3_000, 1_000),
            (p0 + 4_000, 3_000),
            (p0 + 7_000, 3_000),
            (p2, 3_000),
            (p2 + 3_000, 3_000),
            (p2 + 6_000, 3_000),
        ];
        assert_eq!(file_sends(&rope, 3_000), expected);
        assert_eq!(
            file_sends(&rope, usize::MAX),
            vec![(p0, 4_000), (p0 + 4_000, 6_000), (p2, 9_000)]
        );
        // Without files, everything comes from memory, the same bytes.
        match rope.next_write(p0 + 5, 64, false) {
            Some(WriteStep::Memory(slices)) => {
                assert_eq!(&slices[0][..], &whole[p0 + 5..p2][..slices[0].len()])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rope.io_slices(0, usize::MAX).len(), 5);
    }

    #[test]
    fn given_spans_that_do_not_add_up_to_their_value_should_send_it_from_memory() {
        let values = [value(10_000, 1)];
        let files = vec![FileBacked {
            value: values[0].clone(),
            spans: spans(&[4_000, 5_999]),
        }];
        let mut rope = ResponseRope::new();
        encode_fetch(&mut rope, 1, &values, files);
        assert!(file_sends(&rope, usize::MAX).is_empty());
    }

    #[test]
    fn given_response_without_large_values_should_be_all_inline() {
        let body = fetch_response(&[value(10, 1)]);
        let mut rope = ResponseRope::new();
        encode_response_shared(&mut rope, ApiKey::Fetch, 12, 3, &body, Vec::new()).unwrap();
        assert!(rope.shared.is_empty());
        let mut plain = BytesMut::new();
        crate::response::encode_response(&mut plain, ApiKey::Fetch, 12, 3, &body).unwrap();
        assert_eq!(rope.to_vec(), plain.to_vec());
    }
}
