//! Runnel's thin adapter over the generated Kafka codecs (`kafka-protocol`).
//!
//! What lives here: the length-prefixed framing ([`frame`]), request decoding with the
//! version checks every handler relies on ([`request`]), response encoding with the right
//! header version ([`response`]). No I/O and no async runtime: the broker feeds bytes in and
//! gets bytes out, so everything here is tested without sockets.
//!
//! Message codecs are never written by hand: [`kafka_protocol`] is re-exported so that the
//! broker uses the same generated types.

pub mod frame;
pub mod request;
pub mod response;
pub mod rope;

pub use kafka_protocol;
pub use kafka_protocol::messages::ApiKey;
pub use kafka_protocol::protocol::StrBytes;

/// An inclusive range of versions of one API that Runnel implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub min: i16,
    pub max: i16,
}

impl VersionRange {
    pub const fn new(min: i16, max: i16) -> Self {
        VersionRange { min, max }
    }
    pub fn contains(&self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}
