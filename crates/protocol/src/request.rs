//! Request decoding: header, API key and version checks, body through the generated codec.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use thiserror::Error;

use crate::VersionRange;

/// A request ready for its handler.
#[derive(Debug)]
pub struct DecodedRequest {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub body: RequestKind,
}

/// What became of a frame.
#[derive(Debug)]
pub enum Decoded {
    Request(Box<DecodedRequest>),
    /// ApiVersions at a version this broker does not know (KIP-511): the answer is a
    /// v0-format ApiVersions response with UNSUPPORTED_VERSION that lists our ranges.
    ApiVersionsUnsupported {
        correlation_id: i32,
        api_version: i16,
    },
}

/// A frame that cannot be answered: the connection is closed after logging it.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("request frame of {size_bytes} bytes is shorter than a request header")]
    TooShort { size_bytes: usize },
    #[error("unknown api key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("unsupported version {api_version} of {api_key:?}")]
    UnsupportedVersion {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{api_version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// Bytes of api key, api version and correlation id, common to every request header.
const FIXED_HEADER_BYTES: usize = 8;

/// Decodes one request frame (without its size prefix). `supported` gives the versions the
/// broker implements for a key (`None`: not implemented). A version inside the advertised
/// range that the codec cannot decode (Produce v0–v2, advertised for librdkafka's feature
/// detection) is refused as unsupported.
pub fn decode_request(
    frame: Bytes,
    supported: impl Fn(ApiKey) -> Option<VersionRange>,
) -> Result<Decoded, DecodeError> {
    if frame.len() < FIXED_HEADER_BYTES {
        return Err(DecodeError::TooShort {
            size_bytes: frame.len(),
        });
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let codec = api_key.valid_versions();
    let decodable = codec.min <= api_version && api_version <= codec.max;
    let ours = supported(api_key);
    let implemented = ours.is_some_and(|r| r.contains(api_version)) && decodable;
    if !implemented {
        if api_key == ApiKey::ApiVersions && ours.is_some() && api_version > 0 {
            return Ok(Decoded::ApiVersionsUnsupported {
                correlation_id,
                api_version,
            });
        }
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            api_version,
            correlation_id,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        api_version,
        correlation_id,
        reason,
    };
    // The generated codec returns errors for short input; guard against panics as well so
    // that one bad frame never takes a connection task down without an answer and a log.
    let decoded = std::panic::catch_unwind(move || {
        let mut buf = frame;
        let header_version = api_key.request_header_version(api_version);
        let header =
            RequestHeader::decode(&mut buf, header_version).map_err(|e| format!("header: {e}"))?;
        let body =
            RequestKind::decode(api_key, &mut buf, api_version).map_err(|e| e.to_string())?;
        Ok::<_, String>((header, body))
    });
    match decoded {
        Ok(Ok((header, body))) => Ok(Decoded::Request(Box::new(DecodedRequest {
            header,
            api_key,
            api_version,
            body,
        }))),
        Ok(Err(reason)) => Err(malformed(reason)),
        Err(_) => Err(malformed("decoder panicked".into())),
    }
}
