//! Response encoding: size prefix, the response header at the version the API needs, body.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{
    api_versions_response::ApiVersion, ApiKey, ApiVersionsResponse, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::Encodable;
use thiserror::Error;

use crate::VersionRange;

#[derive(Debug, Error)]
#[error("cannot encode {api_key:?} v{api_version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub reason: String,
}

/// Appends one whole response frame to `out`. On error `out` is left as it was.
pub fn encode_response(
    out: &mut BytesMut,
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<(), EncodeError> {
    let start = out.len();
    let err = |reason: String| EncodeError {
        api_key,
        api_version,
        reason,
    };
    // ApiVersions responses always use header v0, so that a client that sent a version we
    // do not know can still read the answer (KIP-511).
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(api_version)
    };
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let result = header
        .encode(out, header_version)
        .and_then(|_| body.encode(out, api_version));
    if let Err(e) = result {
        out.truncate(start);
        return Err(err(e.to_string()));
    }
    let size = out.len() - start - 4;
    let Ok(size) = i32::try_from(size) else {
        out.truncate(start);
        return Err(err(format!("response of {size} bytes is too large")));
    };
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// The KIP-511 answer to an ApiVersions request at a version we do not know: v0 body with
/// UNSUPPORTED_VERSION (35) and the ranges we do support.
pub fn encode_api_versions_unsupported(
    out: &mut BytesMut,
    correlation_id: i32,
    ranges: &[(ApiKey, VersionRange)],
) -> Result<(), EncodeError> {
    const UNSUPPORTED_VERSION: i16 = 35;
    let body = ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(api_version_entries(ranges));
    encode_response(
        out,
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ResponseKind::ApiVersions(body),
    )
}

/// The `api_keys` array of an ApiVersions response.
pub fn api_version_entries(ranges: &[(ApiKey, VersionRange)]) -> Vec<ApiVersion> {
    ranges
        .iter()
        .map(|(key, range)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(range.min)
                .with_max_version(range.max)
        })
        .collect()
}
