//! One client connection: read frames, answer them in order, reap when idle.
//!
//! Requests on one connection are handled one at a time, in arrival order, as Kafka does
//! (it mutes a channel while a request is in flight). Pipelined requests therefore get
//! their responses in order; a long-polling Fetch delays only its own connection. Responses
//! that are ready while more whole requests are already buffered are written together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use runnel_protocol::frame::take_frame;
use runnel_protocol::request::{decode_request, DecodeError, Decoded};
use runnel_protocol::response::{encode_api_versions_unsupported, encode_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::handlers::{self, Reply};
use crate::state::Broker;

/// Initial capacity of a connection's read buffer; it grows to the largest frame seen, which
/// `socket.request.max.bytes` bounds.
const READ_BUFFER_BYTES_INITIAL: usize = 64 * 1024;
/// Buffered responses are flushed once they exceed this, even if more requests are queued.
const WRITE_BUFFER_BYTES_FLUSH: usize = 1024 * 1024;

pub(crate) async fn serve_connection(broker: Arc<Broker>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let frame_bytes_max = broker.config.socket_request_max_bytes as usize;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1) as u64);
    let mut input = BytesMut::with_capacity(READ_BUFFER_BYTES_INITIAL);
    let mut output = BytesMut::new();
    let mut shutdown = broker.shutdown_signal();
    let _connection = broker.metrics.connection();
    loop {
        // Answer every whole request already buffered.
        loop {
            let frame = match take_frame(&mut input, frame_bytes_max) {
                Ok(Some(frame)) => frame.freeze(),
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, error = %e, "closing connection: bad frame");
                    let _ = stream.write_all(&output).await;
                    return;
                }
            };
            match decode_request(frame, handlers::supported) {
                Ok(Decoded::Request(req)) => {
                    let api_key = req.api_key;
                    let api_version = req.api_version;
                    let correlation_id = req.header.correlation_id;
                    let started = std::time::Instant::now();
                    let reply = handlers::dispatch(&broker, *req, peer).await;
                    if let Some(Some(m)) = broker.api_metrics.get(api_key as usize) {
                        let error = match &reply {
                            Reply::Response(body) => handlers::has_error(body),
                            Reply::NoResponse => false,
                        };
                        m.record(api_version, started.elapsed(), error);
                    }
                    match reply {
                        Reply::Response(body) => {
                            if let Err(e) = encode_response(
                                &mut output,
                                api_key,
                                api_version,
                                correlation_id,
                                &body,
                            ) {
                                warn!(%peer, error = %e, "closing connection: cannot encode response");
                                let _ = stream.write_all(&output).await;
                                return;
                            }
                        }
                        Reply::NoResponse => {}
                    }
                }
                Ok(Decoded::ApiVersionsUnsupported {
                    correlation_id,
                    api_version,
                }) => {
                    debug!(%peer, api_version, "ApiVersions at an unknown version: answering v0");
                    if let Err(e) = encode_api_versions_unsupported(
                        &mut output,
                        correlation_id,
                        handlers::SUPPORTED,
                    ) {
                        warn!(%peer, error = %e, "closing connection");
                        return;
                    }
                }
                Err(e) => {
                    match &e {
                        DecodeError::UnsupportedVersion { .. }
                        | DecodeError::UnknownApiKey { .. } => {
                            info!(%peer, error = %e, "closing connection: request not supported")
                        }
                        _ => warn!(%peer, error = %e, "closing connection: malformed request"),
                    }
                    let _ = stream.write_all(&output).await;
                    return;
                }
            }
            if output.len() >= WRITE_BUFFER_BYTES_FLUSH {
                if let Err(e) = stream.write_all(&output).await {
                    debug!(%peer, error = %e, "connection write failed");
                    return;
                }
                output.clear();
            }
        }
        if !output.is_empty() {
            if let Err(e) = stream.write_all(&output).await {
                debug!(%peer, error = %e, "connection write failed");
                return;
            }
            output.clear();
        }
        if input.capacity() - input.len() < 4096 {
            input.reserve(READ_BUFFER_BYTES_INITIAL);
        }
        tokio::select! {
            read = tokio::time::timeout(idle, stream.read_buf(&mut input)) => match read {
                Ok(Ok(0)) => {
                    debug!(%peer, "connection closed by client");
                    return;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "connection read failed");
                    return;
                }
                Err(_) => {
                    info!(%peer, idle_ms = idle.as_millis() as u64, "closing idle connection (connections.max.idle.ms)");
                    return;
                }
            },
            _ = crate::state::stopped(&mut shutdown) => return,
        }
    }
}
