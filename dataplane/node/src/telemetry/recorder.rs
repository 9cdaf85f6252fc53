//! The per-request side: a [`Tally`] the proxy fills while it handles a request, a body
//! wrapper counting request bytes, and one counting response bytes that records the request
//! when the response body ends (or is dropped: a client that hangs up is still counted).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use fleetgate_protocol::RequestRecord;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use uuid::Uuid;

use super::now_unix_ms;
use crate::gateway::Gateway;
use crate::proxy::{BoxError, ProxyBody};

/// Status recorded for a request whose client went away before it was answered (nginx's
/// and Kong's "client closed request").
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What the proxy learns about one request. Only ids and numbers: nothing here can hold a
/// path, header, body, query string or client address. Dropped without [`Self::finish`]
/// (the client hung up while the proxy waited), it still records the request, as a 499.
#[derive(Debug)]
pub struct Tally {
    started: Instant,
    time_ms: i64,
    control_plane_id: Uuid,
    /// Matched service.
    pub service_id: Option<Uuid>,
    /// Matched route.
    pub route_id: Option<Uuid>,
    /// Authenticated consumer.
    pub consumer_id: Option<Uuid>,
    upstream: Duration,
    /// When the request in flight to an upstream was sent.
    upstream_since: Option<Instant>,
    /// Request body bytes, once a body is counted (`None`: none so far, or telemetry off).
    bytes_in: Option<Arc<AtomicU64>>,
    /// `None` when telemetry is off (nothing is counted or recorded) or once the request
    /// was handed to its response body.
    gateway: Option<Arc<Gateway>>,
}

impl Tally {
    /// Starts a tally for a request that arrived at `started`, running a config of
    /// `control_plane_id`.
    pub fn start(gateway: &Arc<Gateway>, started: Instant, control_plane_id: Uuid) -> Self {
        let enabled = gateway.telemetry.enabled();
        Self {
            started,
            time_ms: if enabled { now_unix_ms() } else { 0 },
            control_plane_id,
            service_id: None,
            route_id: None,
            consumer_id: None,
            upstream: Duration::ZERO,
            upstream_since: None,
            // Made when a request body is counted: most requests have none.
            bytes_in: None,
            gateway: enabled.then(|| gateway.clone()),
        }
    }

    /// A request was sent to an upstream: its wait for response headers starts.
    pub fn upstream_sent(&mut self) {
        // Only telemetry reads it: no clock read when nothing is recorded.
        if self.gateway.is_some() {
            self.upstream_sent_at(Instant::now());
        }
    }

    /// [`Self::upstream_sent`] at a time the caller read.
    pub fn upstream_sent_at(&mut self, at: Instant) {
        if self.gateway.is_some() {
            self.upstream_since = Some(at);
        }
    }

    /// [`Self::upstream_done`] at a time the caller read.
    pub fn upstream_done_at(&mut self, at: Instant) {
        if let Some(since) = self.upstream_since.take() {
            self.upstream += at.saturating_duration_since(since);
        }
    }

    /// The upstream answered (or failed): the wait is added to the upstream latency, which
    /// sums all attempts.
    pub fn upstream_done(&mut self) {
        if self.upstream_since.is_some() {
            self.upstream_done_at(Instant::now());
        }
    }

    /// Wraps the request body so the bytes read from the client are counted.
    pub fn count_request_body<B>(&mut self, body: B) -> CountingBody<B> {
        let counter = self.gateway.is_some().then(|| {
            self.bytes_in
                .get_or_insert_with(|| Arc::new(AtomicU64::new(0)))
                .clone()
        });
        CountingBody {
            inner: body,
            counter,
        }
    }

    /// Wraps the response so the request is recorded when its body ends; unchanged when
    /// telemetry is off.
    pub fn finish(mut self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        let Some(pending) = self.pending(response.status().as_u16()) else {
            return response;
        };
        response.map(|inner| {
            RecordingBody {
                inner,
                record: ResponseRecord(Some(pending)),
            }
            .boxed()
        })
    }

    /// For a response the HTTP/1 fast path writes itself (no body wrapper): the record,
    /// recorded when the returned guard drops, with the body bytes added to it.
    pub fn respond(mut self, status: u16) -> ResponseRecord {
        ResponseRecord(self.pending(status))
    }

    /// Drops the tally without recording anything: the request is handed, unanswered, to
    /// the general path, which counts it itself.
    pub fn forget(mut self) {
        self.gateway = None;
        self.bytes_in = None;
    }

    /// The record-to-be, taken out of the tally (so it is recorded once).
    fn pending(&mut self, status: u16) -> Option<Pending> {
        let gateway = self.gateway.take()?;
        let bytes_in = self.bytes_in.take();
        // A client that left mid-wait: the wait so far counts.
        self.upstream_done();
        Some(Pending {
            gateway,
            started: self.started,
            upstream: self.upstream,
            bytes_in,
            bytes_out: 0,
            record: RequestRecord {
                time_ms: self.time_ms,
                control_plane_id: self.control_plane_id,
                service_id: self.service_id,
                route_id: self.route_id,
                consumer_id: self.consumer_id,
                // Stamped when the batch is formed (one node per buffer).
                node_id: Uuid::nil(),
                status,
                latency_total_us: 0,
                latency_upstream_us: 0,
                latency_gateway_us: 0,
                bytes_in: 0,
                bytes_out: 0,
            },
        })
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        // Only reached with a pending record when the request future was dropped before it
        // produced a response: the client closed the connection.
        if let Some(pending) = self.pending(CLIENT_CLOSED_REQUEST) {
            pending.record();
        }
    }
}

/// A body that adds the size of every data frame to a counter.
#[derive(Debug)]
pub struct CountingBody<B> {
    inner: B,
    counter: Option<Arc<AtomicU64>>,
}

impl<B> Body for CountingBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(counter)) = (&polled, &this.counter) {
            if let Some(data) = frame.data_ref() {
                counter.fetch_add(data.remaining() as u64, Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request answered by the fast path: recorded once, when dropped (so a client that goes
/// away mid-body is still counted, with the bytes it got).
#[derive(Default)]
pub struct ResponseRecord(Option<Pending>);

impl ResponseRecord {
    /// Body bytes sent downstream.
    pub fn add_bytes_out(&mut self, bytes: u64) {
        if let Some(pending) = self.0.as_mut() {
            pending.bytes_out += bytes;
        }
    }
}

impl ResponseRecord {
    /// Records the request now (once: later calls and the drop do nothing).
    fn finish(&mut self) {
        if let Some(pending) = self.0.take() {
            pending.record();
        }
    }
}

impl Drop for ResponseRecord {
    fn drop(&mut self) {
        self.finish();
    }
}

struct Pending {
    gateway: Arc<Gateway>,
    started: Instant,
    upstream: Duration,
    bytes_in: Option<Arc<AtomicU64>>,
    bytes_out: u64,
    record: RequestRecord,
}

impl Pending {
    fn record(self) {
        let micros = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        let total = micros(self.started.elapsed());
        let upstream = micros(self.upstream);
        let mut record = self.record;
        record.latency_total_us = total;
        record.latency_upstream_us = upstream;
        record.latency_gateway_us = total.saturating_sub(upstream);
        record.bytes_in = self.bytes_in.map_or(0, |counted| counted.load(Relaxed));
        record.bytes_out = self.bytes_out;
        self.gateway.telemetry.record(record);
    }
}

/// The response body: counts bytes out and records the request exactly once, at its end
/// (or when dropped unfinished: HEAD, 204, a client that went away — still one record).
struct RecordingBody {
    inner: ProxyBody,
    record: ResponseRecord,
}

impl Body for RecordingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.record.add_bytes_out(data.len() as u64);
                }
                if this.inner.is_end_stream() {
                    this.record.finish();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.record.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
