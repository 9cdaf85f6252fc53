//! Upstream connections of the fast path: plain HTTP/1.1 over TCP, kept alive in a pool per
//! proxy worker thread, like an nginx worker's keepalive cache. A worker only ever touches
//! its own pool, so taking and returning a connection costs no lock, and a connection is
//! only used on the event loop whose reactor it is registered with.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::framing::{response_framing, Framing};
use super::wire::{make_room, span, RawHeaders};

/// Idle connections kept per upstream address and worker.
const MAX_IDLE_PER_ADDRESS: usize = 512;
/// Idle connections are closed after at most this long (nginx's `keepalive_timeout`
/// default is 60 s); [`sweep`] runs every quarter of it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Sweeps an idle connection survives: it is closed after 45 to 60 s. Ages are counted in
/// sweeps rather than read from the clock, so pooling costs no clock read per request.
const IDLE_SWEEPS: u64 = 4;
/// The largest response head accepted from an upstream.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Headers accepted in one response head.
const MAX_HEADERS: usize = 128;
const READ_CHUNK: usize = 16 * 1024;

struct Idle {
    /// Kept whole, buffers included, so a reused connection allocates nothing again.
    conn: UpstreamConn,
    /// The pool's sweep count when it was returned.
    since_sweep: u64,
}

#[derive(Default)]
struct Pool {
    by_address: HashMap<String, Vec<Idle>, foldhash::fast::RandomState>,
    sweeps: u64,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// One upstream connection, with the bytes read from it and not yet relayed.
pub struct UpstreamConn {
    /// The socket.
    pub stream: TcpStream,
    /// Read but not yet consumed.
    pub buf: BytesMut,
    /// Taken from the pool: a failure before any answer may be a keep-alive race (the
    /// upstream closed it as it was reused), not a sign the upstream is down.
    pub reused: bool,
    /// The last response head read.
    pub head: RawHeaders,
}

/// A pooled connection to `address` that is still open, if any.
pub fn checkout(address: &str) -> Option<UpstreamConn> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.by_address.get_mut(address)?;
        while let Some(Idle { mut conn, .. }) = idle.pop() {
            // An idle connection has nothing to read; EOF, data or an error mean the
            // upstream closed or broke it. (This costs no syscall unless the event loop saw
            // the socket become readable; WouldBlock also clears that readiness.)
            let mut probe = [0u8; 1];
            if matches!(conn.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            {
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    })
}

/// Returns a connection whose last response was read completely.
pub fn checkin(address: &str, mut conn: UpstreamConn) {
    if !conn.buf.is_empty() {
        // Bytes beyond the response: the upstream is out of step with us.
        return;
    }
    // The old head shares the read buffer's memory; let the buffer have it back.
    conn.head.raw = bytes::Bytes::new();
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = Idle {
            conn,
            since_sweep: pool.sweeps,
        };
        match pool.by_address.get_mut(address) {
            Some(list) if list.len() < MAX_IDLE_PER_ADDRESS => list.push(idle),
            Some(_) => {}
            None => {
                pool.by_address.insert(address.to_string(), vec![idle]);
            }
        }
    });
}

/// Ages this worker's idle connections by one sweep, closing those idle for
/// [`IDLE_SWEEPS`] sweeps.
pub fn sweep() {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.sweeps += 1;
        let now = pool.sweeps;
        pool.by_address.retain(|_, list| {
            list.retain(|idle| now - idle.since_sweep < IDLE_SWEEPS);
            !list.is_empty()
        });
    });
}

/// Opens a new connection within `timeout` (names are resolved by the system resolver).
pub async fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<UpstreamConn> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let connect = async {
        let stream = match bare.parse::<IpAddr>() {
            Ok(ip) => TcpStream::connect(SocketAddr::new(ip, port)).await?,
            Err(_) => TcpStream::connect((bare, port)).await?,
        };
        stream.set_nodelay(true)?;
        Ok::<_, io::Error>(stream)
    };
    let stream = tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    Ok(UpstreamConn {
        stream,
        buf: BytesMut::with_capacity(READ_CHUNK),
        reused: false,
        head: RawHeaders::default(),
    })
}

/// Why an upstream exchange failed before a response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The connection closed or broke; `answered` is whether any byte of a response came.
    #[error("the upstream connection closed: {source}")]
    Closed {
        /// Any response byte received.
        answered: bool,
        /// The I/O failure (EOF as `UnexpectedEof`).
        source: io::Error,
    },
    /// The response head is not valid HTTP/1.1 (or too large).
    #[error("invalid response head from the upstream: {0}")]
    Invalid(&'static str),
}

/// What the fast path needs of an upstream response head; the headers themselves stay in the
/// connection ([`UpstreamConn::headers`]).
#[derive(Debug)]
pub struct ResponseHead {
    /// Status.
    pub status: StatusCode,
    /// Whether the upstream keeps the connection open after this response.
    pub keep_alive: bool,
    /// How the body is delimited; `None` when the head contradicts itself.
    pub framing: Option<Framing>,
    /// Whether the upstream sent a `Date`.
    pub has_date: bool,
}

impl UpstreamConn {
    /// Reads more bytes into the buffer; `Ok(0)` at EOF.
    pub async fn fill(&mut self) -> io::Result<usize> {
        make_room(&mut self.buf, READ_CHUNK);
        self.stream.read_buf(&mut self.buf).await
    }

    /// Reads the next final response head to a `method` request (1xx interim answers are
    /// skipped), consuming it from the buffer; body bytes that came with it stay there.
    pub async fn read_head(&mut self, method: &Method) -> Result<ResponseHead, HeadError> {
        let mut answered = !self.buf.is_empty();
        loop {
            if let Some(head) = self.parse_head(method)? {
                if head.status.is_informational() {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(HeadError::Invalid("101 to a request without Upgrade"));
                    }
                    continue;
                }
                return Ok(head);
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(HeadError::Invalid("response head too large"));
            }
            match self.fill().await {
                Ok(0) => {
                    return Err(HeadError::Closed {
                        answered,
                        source: io::ErrorKind::UnexpectedEof.into(),
                    })
                }
                Ok(_) => answered = true,
                Err(source) => return Err(HeadError::Closed { answered, source }),
            }
        }
    }

    fn parse_head(&mut self, method: &Method) -> Result<Option<ResponseHead>, HeadError> {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            &self.buf,
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(HeadError::Invalid("malformed")),
        };
        let status = response
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or(HeadError::Invalid("status"))?;
        let mut close = response.version != Some(1);
        let mut has_date = false;
        self.head.spans.clear();
        for h in response.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"connection") {
                for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            }
            has_date |= name.eq_ignore_ascii_case(b"date");
            let name_span = span(&self.buf, name);
            self.head.spans.push((name_span, span(&self.buf, h.value)));
        }
        let framing = response_framing(
            method,
            status,
            response
                .headers
                .iter()
                .map(|h| (h.name.as_bytes(), h.value)),
        );
        self.head.raw = self.buf.split_to(len).freeze();
        Ok(Some(ResponseHead {
            status,
            keep_alive: !close,
            framing,
            has_date,
        }))
    }
}
