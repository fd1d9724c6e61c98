//! A minimal blocking Kafka request/response client over the `kafka-protocol` codecs, used only
//! for what librdkafka (as the rdkafka crate exposes it) does not offer: describing KIP-848
//! consumer groups (ConsumerGroupDescribe), which DescribeGroups answers as not found.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// Largest response accepted (a describe of a huge group still fits).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

pub struct Connection {
    stream: TcpStream,
    correlation_id: i32,
    versions: Vec<(i16, i16, i16)>,
}

pub type WireResult<T> = Result<T, String>;

impl Connection {
    /// Connects to the first of `brokers` (HOST:PORT,...) that answers, and asks ApiVersions.
    pub fn connect_any(brokers: &str, timeout: Duration) -> WireResult<Connection> {
        let mut last = String::from("no broker address given");
        for b in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            match Connection::connect(b, timeout) {
                Ok(c) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub fn connect(addr: &str, timeout: Duration) -> WireResult<Connection> {
        let addrs = addr
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {addr}: {e}"))?;
        let mut last = format!("cannot resolve {addr}");
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(timeout)).ok();
                    stream.set_write_timeout(Some(timeout)).ok();
                    stream.set_nodelay(true).ok();
                    let mut c = Connection {
                        stream,
                        correlation_id: 0,
                        versions: Vec::new(),
                    };
                    let resp: ApiVersionsResponse =
                        c.send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
                    c.versions = resp
                        .api_keys
                        .iter()
                        .map(|k| (k.api_key, k.min_version, k.max_version))
                        .collect();
                    return Ok(c);
                }
                Err(e) => last = format!("cannot connect to {addr}: {e}"),
            }
        }
        Err(last)
    }

    /// The highest version of `R` that both sides speak, or None if the broker has not this API.
    pub fn version<R: Request>(&self) -> Option<i16> {
        let (_, min, max) = self.versions.iter().find(|(k, _, _)| *k == R::KEY)?;
        let v = (*max).min(R::VERSIONS.max);
        (v >= (*min).max(R::VERSIONS.min)).then_some(v)
    }

    pub fn request<R: Request>(&mut self, req: &R) -> WireResult<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| "unknown API key".to_string())?;
        let version = self
            .version::<R>()
            .ok_or_else(|| format!("the broker does not support {key:?} (UNSUPPORTED_VERSION)"))?;
        self.send(key, version, req)
    }

    fn send<R, S>(&mut self, key: ApiKey, version: i16, req: &R) -> WireResult<S>
    where
        R: Encodable + HeaderVersion,
        S: Decodable + HeaderVersion,
    {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("runnel-cli")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .and_then(|_| req.encode(&mut body, version))
            .map_err(|e| format!("cannot encode {key:?}: {e}"))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream
            .write_all(&frame)
            .map_err(|e| format!("cannot send {key:?}: {e}"))?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| format!("no answer to {key:?}: {e}"))?;
        let len = i32::from_be_bytes(len);
        if len < 0 || len as usize > MAX_RESPONSE_BYTES {
            return Err(format!("bad response size {len} to {key:?}"));
        }
        let mut buf = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut buf)
            .map_err(|e| format!("short answer to {key:?}: {e}"))?;
        let mut buf = Bytes::from(buf);
        let rh = ResponseHeader::decode(&mut buf, S::header_version(version))
            .map_err(|e| format!("cannot decode the {key:?} response header: {e}"))?;
        if rh.correlation_id != self.correlation_id {
            return Err(format!("{key:?}: response out of order"));
        }
        let resp =
            S::decode(&mut buf, version).map_err(|e| format!("cannot decode {key:?}: {e}"))?;
        let _ = buf.remaining();
        Ok(resp)
    }
}

/// A connection to the coordinator of `group`.
pub fn coordinator(brokers: &str, group: &str, timeout: Duration) -> WireResult<Connection> {
    let mut conn = Connection::connect_any(brokers, timeout)?;
    let version = conn
        .version::<FindCoordinatorRequest>()
        .ok_or("the broker does not support FindCoordinator (UNSUPPORTED_VERSION)")?;
    let mut req = FindCoordinatorRequest::default().with_key_type(0);
    if version >= 4 {
        req.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
    } else {
        req.key = StrBytes::from_string(group.to_string());
    }
    let resp: FindCoordinatorResponse = conn.request(&req)?;
    let (code, host, port) = if version >= 4 {
        let c = resp
            .coordinators
            .first()
            .ok_or("FindCoordinator: empty answer")?;
        (c.error_code, c.host.to_string(), c.port)
    } else {
        (resp.error_code, resp.host.to_string(), resp.port)
    };
    if code != 0 {
        return Err(crate::client::kafka_code_name(code));
    }
    let addr = format!("{host}:{port}");
    let peer_is_it = conn
        .stream
        .peer_addr()
        .ok()
        .zip(addr.to_socket_addrs().ok().and_then(|mut a| a.next()))
        .is_some_and(|(p, a)| p == a);
    if peer_is_it {
        Ok(conn)
    } else {
        Connection::connect(&addr, timeout)
    }
}

/// ConsumerGroupDescribe of one KIP-848 group.
pub fn describe_consumer_group(
    brokers: &str,
    group: &str,
    timeout: Duration,
) -> WireResult<kafka_protocol::messages::consumer_group_describe_response::DescribedGroup> {
    let mut conn = coordinator(brokers, group, timeout)?;
    let req = ConsumerGroupDescribeRequest::default()
        .with_group_ids(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let resp: ConsumerGroupDescribeResponse = conn.request(&req)?;
    resp.groups
        .into_iter()
        .next()
        .ok_or_else(|| "ConsumerGroupDescribe: empty answer".to_string())
}
