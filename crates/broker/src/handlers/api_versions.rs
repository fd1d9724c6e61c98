//! ApiVersions (key 18). Lists `SUPPORTED`; an unknown version gets the KIP-511 v0 answer
//! before it reaches here (see `runnel_protocol::request`).

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use runnel_protocol::response::api_version_entries;
use runnel_protocol::VersionRange;

use crate::state::Broker;

pub const VERSIONS: VersionRange = VersionRange::new(0, 4);

pub fn handle(_broker: &Broker, _req: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(api_version_entries(super::SUPPORTED))
}
