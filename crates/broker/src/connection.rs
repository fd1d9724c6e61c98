//! One client connection: read frames, answer them in order, reap when idle.
//!
//! Requests on one connection are handled one at a time, in arrival order, as Kafka does
//! (it mutes a channel while a request is in flight). Pipelined requests therefore get
//! their responses in order; a long-polling Fetch delays only its own connection. Responses
//! that are ready while more whole requests are already buffered are written together.
//!
//! A connection is closed after `connections.max.idle.ms` without progress, whether it waits
//! for the client to send (a read), for the client to take its responses (a write: a client
//! that sends requests but never reads is not kept for ever), or for request memory
//! (`queued.max.request.bytes`, taken for a request once its size is known and before the
//! rest of it is buffered; released once it is answered).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use runnel_protocol::frame::{pending_frame_bytes, take_frame, FRAME_SIZE_PREFIX_BYTES};
use runnel_protocol::request::{decode_request, DecodeError, Decoded};
use runnel_protocol::response::encode_api_versions_unsupported;
use runnel_protocol::rope::{encode_response_shared, ResponseRope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::handlers::{self, Reply};
use crate::limits::{RequestMemory, RequestMemoryPool};
use crate::state::Broker;

/// Initial capacity of a connection's read buffer; it grows (doubling) with the largest frame
/// seen, which `socket.request.max.bytes` bounds.
const READ_BUFFER_BYTES_INITIAL: usize = 64 * 1024;
/// Buffered responses are flushed once they exceed this, even if more requests are queued.
const WRITE_BUFFER_BYTES_FLUSH: usize = 1024 * 1024;
/// Slices per vectored write (Linux takes up to 1024).
const WRITE_SLICES_MAX: usize = 64;

pub(crate) async fn serve_connection(broker: Arc<Broker>, mut stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let frame_bytes_max = broker.config.socket_request_max_bytes as usize;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1) as u64);
    let mut input = BytesMut::with_capacity(READ_BUFFER_BYTES_INITIAL);
    // Responses not yet written; Fetch responses' records are shared with the log's reads,
    // not copied (one vectored write sends them).
    let mut output = ResponseRope::new();
    let mut shutdown = broker.shutdown_signal();
    let _connection = broker.metrics.connection();
    // `queued.max.request.bytes` taken for the partly read frame at the front of `input`.
    let mut frame_memory: Option<RequestMemory> = None;
    loop {
        // Answer every whole request already buffered.
        loop {
            let frame = match take_frame(&mut input, frame_bytes_max) {
                Ok(Some(frame)) => frame.freeze(),
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, error = %e, "closing connection: bad frame");
                    let _ = write_out(&mut stream, &output, idle, peer).await;
                    return;
                }
            };
            // Request memory, given back once this request is answered. A frame that arrived
            // whole takes its bytes now; if none are left, what is answered so far goes out
            // and the connection waits (reading nothing more) until some are.
            let frame_bytes = FRAME_SIZE_PREFIX_BYTES + frame.len();
            let _frame_memory = match (frame_memory.take(), &broker.request_memory) {
                (Some(memory), _) => Some(memory),
                (None, None) => None,
                (None, Some(pool)) => match pool.try_allocate(frame_bytes) {
                    Some(memory) => Some(memory),
                    None => {
                        if write_out(&mut stream, &output, idle, peer).await.is_err() {
                            return;
                        }
                        output.clear();
                        let waited =
                            wait_for_memory(pool, frame_bytes, idle, &mut shutdown, peer).await;
                        match waited {
                            Some(memory) => Some(memory),
                            None => return,
                        }
                    }
                },
            };
            match decode_request(frame, handlers::supported) {
                Ok(Decoded::Request(req)) => {
                    let api_key = req.api_key;
                    let api_version = req.api_version;
                    let correlation_id = req.header.correlation_id;
                    let started = std::time::Instant::now();
                    debug!(%peer, api_key = ?api_key, api_version, correlation_id, "request");
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
                            if let Err(e) = encode_response_shared(
                                &mut output,
                                api_key,
                                api_version,
                                correlation_id,
                                &body,
                            ) {
                                warn!(%peer, error = %e, "closing connection: cannot encode response");
                                let _ = write_out(&mut stream, &output, idle, peer).await;
                                return;
                            }
                            debug!(%peer, api_key = ?api_key, correlation_id, buffered_bytes = output.len(), "response");
                        }
                        Reply::NoResponse => {
                            debug!(%peer, api_key = ?api_key, correlation_id, "no response");
                        }
                    }
                }
                Ok(Decoded::ApiVersionsUnsupported {
                    correlation_id,
                    api_version,
                }) => {
                    debug!(%peer, api_version, "ApiVersions at an unknown version: answering v0");
                    if let Err(e) = encode_api_versions_unsupported(
                        output.inline_mut(),
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
                    let _ = write_out(&mut stream, &output, idle, peer).await;
                    return;
                }
            }
            if output.len() >= WRITE_BUFFER_BYTES_FLUSH {
                if write_out(&mut stream, &output, idle, peer).await.is_err() {
                    return;
                }
                output.clear();
            }
        }
        if !output.is_empty() {
            if write_out(&mut stream, &output, idle, peer).await.is_err() {
                return;
            }
            output.clear();
        }
        if let Some(frame_bytes) = pending_frame_bytes(&input) {
            // A frame is partly here and its size is known: take its memory before buffering
            // the rest of it (the pool is empty: stop reading until it is not).
            if frame_memory.is_none() {
                if let Some(pool) = &broker.request_memory {
                    frame_memory =
                        match wait_for_memory(pool, frame_bytes, idle, &mut shutdown, peer).await {
                            Some(memory) => Some(memory),
                            None => return,
                        };
                }
            }
            // Room for the rest, but at most as much again as is already here: the buffer
            // grows with what the client sends (doubling), not with what its size prefix
            // claims, so connections that claim large requests and stall cost nothing.
            let rest = frame_bytes - input.len();
            input.reserve(rest.min(input.len().max(READ_BUFFER_BYTES_INITIAL)));
        } else if input.capacity() - input.len() < 4096 {
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

/// Takes `bytes` of request memory, waiting while none is left; `None` (the connection is to be
/// closed) if none came within `idle` (`connections.max.idle.ms`) or the broker is stopping.
async fn wait_for_memory(
    pool: &Arc<RequestMemoryPool>,
    bytes: usize,
    idle: Duration,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    peer: SocketAddr,
) -> Option<RequestMemory> {
    tokio::select! {
        got = tokio::time::timeout(idle, pool.allocate(bytes)) => match got {
            Ok(memory) => Some(memory),
            Err(_) => {
                info!(%peer, idle_ms = idle.as_millis() as u64, bytes,
                    "closing connection: no request memory (queued.max.request.bytes) for connections.max.idle.ms");
                None
            }
        },
        _ = crate::state::stopped(shutdown) => None,
    }
}

/// Writes the queued responses out (one vectored write at a time), giving up after `idle`
/// (`connections.max.idle.ms`) without the client taking any of them. `Err` means the
/// connection is to be closed (logged here).
async fn write_out(
    stream: &mut TcpStream,
    output: &ResponseRope,
    idle: Duration,
    peer: SocketAddr,
) -> Result<(), ()> {
    let total_bytes = output.len();
    let mut written_bytes = 0usize;
    // Bounded: every iteration writes at least one byte or returns.
    while written_bytes < total_bytes {
        let slices = output.io_slices(written_bytes, WRITE_SLICES_MAX);
        match tokio::time::timeout(idle, stream.write_vectored(&slices)).await {
            Ok(Ok(0)) => {
                debug!(%peer, "connection write failed: the socket took no bytes");
                return Err(());
            }
            Ok(Ok(n)) => written_bytes += n,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "connection write failed");
                return Err(());
            }
            Err(_) => {
                info!(%peer, idle_ms = idle.as_millis() as u64, pending_bytes = total_bytes - written_bytes,
                    "closing connection: the client took no response for connections.max.idle.ms");
                return Err(());
            }
        }
    }
    if total_bytes > 0 {
        debug!(%peer, bytes = total_bytes, "responses written");
    }
    Ok(())
}

impl Broker {
    /// Bytes of requests held against `queued.max.request.bytes` (being read or handled);
    /// `None` when it sets no limit.
    pub fn queued_request_bytes(&self) -> Option<i64> {
        self.request_memory
            .as_ref()
            .map(|pool| self.config.queued_max_request_bytes - pool.available())
    }
}
