//! Arbitrary bytes as a request frame into `runnel_protocol::request::decode_request` (and
//! through `runnel_protocol::frame::take_frame`).
//!
//! The first two input bytes steer to an API key and a version (`runnel_fuzz::steer_request`),
//! so every key and every version the codec knows is reached; a first byte of 0xff passes the
//! rest through as a raw frame (unknown keys, unsupported versions, short frames). The version
//! table accepts every key with the codec's full range (`ApiKey::valid_versions()`), a
//! superset of what the broker advertises (`handlers::SUPPORTED` is crate-private).
//!
//! Decoding must never panic (the libFuzzer panic hook aborts on any panic, even one that
//! `decode_request`'s `catch_unwind` would catch) and never abort; a decoded request agrees
//! with its frame (key, version, correlation id) and formats (every string read as `str`).
//!
//! The broker's global allocator is installed, as in the broker binary
//! (`runnel_broker::huge_alloc::NoReserveForHuge`, compiled in from its source file, see
//! `src/lib.rs`): the generated codecs pre-allocate from wire counts, and it turns a bogus
//! 2^31-element `Vec::with_capacity` into uncommitted address space instead of a failed
//! allocation or an out-of-memory report. Run with `-rss_limit_mb=4096`; an OOM reported even
//! so is a real finding.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use runnel_fuzz::huge_alloc::NoReserveForHuge;
use runnel_protocol::frame::take_frame;
use runnel_protocol::request::{decode_request, DecodeError, Decoded};
use runnel_protocol::VersionRange;

#[global_allocator]
static ALLOCATOR: NoReserveForHuge = NoReserveForHuge;

/// Framing: the input as a byte stream must not panic `take_frame`, and the steered frame
/// behind a size prefix must come back whole.
fn check_framing(data: &[u8], frame: &[u8]) {
    let mut stream = BytesMut::from(data);
    // Bounded: each round takes a frame off the front or stops.
    while let Ok(Some(_)) = take_frame(&mut stream, 64 * 1024) {}
    if frame.len() > 1 << 20 {
        return;
    }
    let mut framed = BytesMut::with_capacity(4 + frame.len());
    framed.extend_from_slice(&(frame.len() as i32).to_be_bytes());
    framed.extend_from_slice(frame);
    framed.extend_from_slice(&[0, 0]);
    let taken = take_frame(&mut framed, 1 << 20).expect("a frame under the bound");
    assert_eq!(taken.as_deref(), Some(frame));
    assert_eq!(&framed[..], &[0, 0]);
}

fuzz_target!(|data: &[u8]| {
    let frame = runnel_fuzz::steer_request(data);
    check_framing(data, &frame);
    let (raw_key, raw_version, correlation) = match frame.as_slice() {
        [a, b, c, d, e, f, g, h, ..] => (
            i16::from_be_bytes([*a, *b]),
            i16::from_be_bytes([*c, *d]),
            Some(i32::from_be_bytes([*e, *f, *g, *h])),
        ),
        _ => (0, 0, None),
    };
    let result = decode_request(Bytes::from(frame), |key| {
        let r = key.valid_versions();
        Some(VersionRange::new(r.min, r.max))
    });
    match result {
        Ok(Decoded::Request(req)) => {
            // Formats every field, strings as `str` (`StrBytes::as_str` trusts that decoding
            // checked UTF-8).
            let _ = format!("{req:?}");
            assert_eq!(req.api_key as i16, raw_key);
            assert_eq!(req.api_version, raw_version);
            assert_eq!(Some(req.header.correlation_id), correlation);
            assert_eq!(req.header.request_api_key, raw_key);
            assert_eq!(req.header.request_api_version, raw_version);
        }
        Ok(Decoded::ApiVersionsUnsupported { correlation_id, .. }) => {
            assert_eq!(Some(correlation_id), correlation);
        }
        Err(DecodeError::TooShort { size_bytes }) => assert!(size_bytes < 8),
        Err(DecodeError::UnknownApiKey { correlation_id, .. })
        | Err(DecodeError::UnsupportedVersion { correlation_id, .. })
        | Err(DecodeError::Malformed { correlation_id, .. }) => {
            assert_eq!(Some(correlation_id), correlation);
        }
    }
});
