//! The scripted raw-TCP upstream, the raw client and the data plane set-up the fast-path
//! tests share.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::Dp;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The bound on every wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?}: {what}"))
}

// ---------------------------------------------------------------------------------------
// The scripted upstream
// ---------------------------------------------------------------------------------------

/// What the scripted upstream saw.
#[derive(Default)]
pub(crate) struct Stats {
    /// Connections accepted.
    pub(crate) accepts: AtomicUsize,
    /// Requests read on a connection doomed by `/doom` and closed without an answer.
    pub(crate) dropped: AtomicUsize,
    /// Keep-alive connections the upstream closed itself after answering (`/close-after`).
    pub(crate) idle_closed: AtomicUsize,
    /// `/slow` requests whose connection the proxy closed while the upstream was waiting.
    pub(crate) abandoned: AtomicUsize,
    /// Request lines (`METHOD target`), in arrival order.
    pub(crate) requests: Mutex<Vec<String>>,
}

impl Stats {
    pub(crate) fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests lock").clone()
    }
}

/// The `/chunked` body as the upstream frames it (sizes split across writes, an extension
/// and a trailer), and decoded.
pub(crate) const CHUNKED_PIECES: [&[u8]; 6] = [
    b"5\r\nhello\r\n",
    b"6\r\n world\r\n",
    b"1",
    b"0;ext=1\r\n, split chunks! \r\n",
    b"2\r\n:)\r\n0\r\n",
    b"x-checksum: abc\r\n\r\n",
];
pub(crate) const CHUNKED_DECODED: &str = "hello world, split chunks! :)";
pub(crate) const BIG_LEN: usize = 1024 * 1024;
/// The `/hop` response's `Date`, which must reach the client unchanged.
pub(crate) const UPSTREAM_DATE: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

pub(crate) fn big_body() -> Vec<u8> {
    (0..BIG_LEN).map(|i| (i % 251) as u8).collect()
}

/// A raw-TCP upstream answering by request path (query ignored):
/// - `/chunked`: a chunked body in several writes with pauses, and a trailer;
/// - `/close`: no length, body in two writes, then close;
/// - `/close-big`: no length, 1 MiB, then close;
/// - `/head`: `content-length: 1000` and no body (for HEAD);
/// - `/204`: 204 No Content;
/// - `/big`: a 1 MiB body in 64 KiB writes;
/// - `/early-close`: `content-length: 100`, 10 bytes, then close;
/// - `/bad`: garbage instead of a status line, then close;
/// - `/hop`: hop-by-hop headers, a fixed `Date`;
/// - `/interim`: a `100 Continue` before the final answer;
/// - `/ok-close`: `connection: close` and a length, then close;
/// - `/close-after`: answers keep-alive, then closes the idle connection 50 ms later;
/// - `/doom` (`?delay=ms` first): answers keep-alive, then closes the connection without an
///   answer on the next request that arrives on it;
/// - `/slow`: answers after 30 s (notes whether the proxy hung up first);
/// - `/slowish`: answers after 200 ms;
/// - anything else: 200 with `ok {target}` and a length, keep-alive.
pub(crate) async fn scripted_upstream() -> (SocketAddr, Arc<Stats>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind scripted upstream");
    let addr = listener.local_addr().expect("addr");
    let stats = Arc::new(Stats::default());
    let shared = stats.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            shared.accepts.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(scripted_connection(stream, shared.clone()));
        }
    });
    (addr, stats)
}

/// Reads one request head (no body is expected); `None` at EOF.
pub(crate) async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(String, String)> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut slots);
            req.parse(&head).ok()?;
            return Some((req.method?.to_string(), req.path?.to_string()));
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub(crate) fn ok_response(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub(crate) async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

pub(crate) async fn scripted_connection(mut stream: TcpStream, stats: Arc<Stats>) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut doomed = false;
    while let Some((method, target)) = read_request(&mut stream, &mut buf).await {
        stats
            .requests
            .lock()
            .expect("requests lock")
            .push(format!("{method} {target}"));
        if doomed {
            stats.dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let path = target.split('?').next().unwrap_or("").to_string();
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let written = match path.as_str() {
            "/chunked" => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\
                            transfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n";
                let mut result = stream.write_all(head.as_bytes()).await;
                for piece in CHUNKED_PIECES {
                    pause(30).await;
                    result = result.and(stream.write_all(piece).await);
                }
                result
            }
            "/close" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ")
                    .await;
                pause(50).await;
                let _ = stream.write_all(b"part two").await;
                let _ = stream.shutdown().await;
                return;
            }
            "/close-big" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
                    .await;
                let _ = stream.write_all(&big_body()).await;
                let _ = stream.shutdown().await;
                return;
            }
            "/head" => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
                    .await
            }
            "/204" => {
                stream
                    .write_all(b"HTTP/1.1 204 No Content\r\nx-script: 204\r\n\r\n")
                    .await
            }
            "/big" => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG_LEN}\r\n\r\n");
                let mut result = stream.write_all(head.as_bytes()).await;
                for (i, piece) in big_body().chunks(64 * 1024).enumerate() {
                    if i % 4 == 1 {
                        pause(10).await;
                    }
                    result = result.and(stream.write_all(piece).await);
                }
                result
            }
            "/early-close" => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
                    .await;
                let _ = stream.shutdown().await;
                return;
            }
            "/bad" => {
                let _ = stream.write_all(b"this is not HTTP at all\r\n\r\n").await;
                let _ = stream.shutdown().await;
                return;
            }
            "/hop" => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nConnection: x-custom\r\nX-Custom: secret\r\n\
                     Keep-Alive: timeout=5\r\nDate: {UPSTREAM_DATE}\r\nX-Kept: yes\r\n\
                     content-length: 3\r\n\r\nhop"
                );
                stream.write_all(head.as_bytes()).await
            }
            "/interim" => {
                stream
                    .write_all(
                        b"HTTP/1.1 100 Continue\r\n\r\n\
                          HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
                    )
                    .await
            }
            "/ok-close" => {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 8\r\n\r\nok-close",
                    )
                    .await;
                let _ = stream.shutdown().await;
                return;
            }
            "/close-after" => {
                let _ = stream
                    .write_all(ok_response(&format!("ok {target}")).as_bytes())
                    .await;
                pause(50).await;
                let _ = stream.shutdown().await;
                drop(stream);
                stats.idle_closed.fetch_add(1, Ordering::SeqCst);
                return;
            }
            "/doom" => {
                let delay = query
                    .strip_prefix("delay=")
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0);
                pause(delay).await;
                doomed = true;
                stream
                    .write_all(ok_response(&format!("ok {target}")).as_bytes())
                    .await
            }
            "/slow" => {
                let mut probe = [0u8; 64];
                tokio::select! {
                    () = pause(30_000) => {}
                    read = stream.read(&mut probe) => {
                        if matches!(read, Ok(0) | Err(_)) {
                            stats.abandoned.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                }
                stream
                    .write_all(ok_response(&format!("ok {target}")).as_bytes())
                    .await
            }
            "/slowish" => {
                pause(200).await;
                stream
                    .write_all(ok_response(&format!("ok {target}")).as_bytes())
                    .await
            }
            _ => {
                stream
                    .write_all(ok_response(&format!("ok {target}")).as_bytes())
                    .await
            }
        };
        if written.is_err() {
            return;
        }
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A data plane whose one service is `upstream`, every path routed to it unchanged.
pub(crate) async fn proxy_to(
    upstream: SocketAddr,
    service_extra: &str,
    settings: &[(&str, &str)],
) -> Dp {
    Dp::start_with(
        &format!(
            r#"_format_version: "3.0"
services:
  - name: scripted
    url: http://{upstream}
{service_extra}    routes:
      - name: all
        paths: [/]
        strip_path: false
"#
        ),
        settings,
    )
    .await
}

// ---------------------------------------------------------------------------------------
// The raw client
// ---------------------------------------------------------------------------------------

/// One response as the client read it.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    /// HTTP minor version of the status line.
    pub(crate) version: u8,
    /// Names lowercased, in order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: Vec<(String, String)>,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let mut all = self.all(name).into_iter();
        let first = all.next();
        assert!(
            all.next().is_none(),
            "more than one {name}: {:?}",
            self.headers
        );
        first
    }

    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {}", self.text()))
    }
}

/// How the body of a response is delimited, as the client sees it.
pub(crate) enum Body {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// A raw HTTP/1.1 client on one connection.
pub(crate) struct Client {
    pub(crate) stream: TcpStream,
    pub(crate) buf: Vec<u8>,
}

impl Client {
    pub(crate) async fn connect(dp: &Dp) -> Self {
        let stream = bounded("connect", TcpStream::connect(dp.dp.proxy_addr))
            .await
            .expect("connect to the proxy");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        bounded("write", self.stream.write_all(bytes))
            .await
            .expect("write to the proxy");
    }

    /// Reads more; `Ok(0)` at EOF.
    pub(crate) async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = bounded("read from the proxy", self.stream.read(&mut chunk)).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    pub(crate) async fn fill_or_panic(&mut self, what: &str) {
        match self.fill().await {
            Ok(0) => panic!(
                "the proxy closed the connection while {what}; got {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(_) => {}
            Err(e) => panic!("read error while {what}: {e}"),
        }
    }

    /// Reads a response head, returning it and how its body is framed.
    pub(crate) async fn head(&mut self, head_request: bool) -> (Resp, Body) {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut slots);
            match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.expect("status");
                    let version = parsed.version.expect("version");
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    self.buf.drain(..len);
                    let resp = Resp {
                        status,
                        version,
                        headers,
                        body: Vec::new(),
                        trailers: Vec::new(),
                    };
                    let chunked = resp
                        .all("transfer-encoding")
                        .iter()
                        .any(|v| v.to_ascii_lowercase().contains("chunked"));
                    let body = if head_request || status == 204 || status == 304 {
                        Body::None
                    } else if chunked {
                        Body::Chunked
                    } else if let Some(len) = resp.header("content-length") {
                        Body::Length(len.trim().parse().expect("numeric content-length"))
                    } else {
                        Body::UntilClose
                    };
                    return (resp, body);
                }
                Ok(httparse::Status::Partial) => self.fill_or_panic("reading a head").await,
                Err(e) => panic!(
                    "invalid response head ({e}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Reads one complete response.
    pub(crate) async fn response(&mut self, head_request: bool) -> Resp {
        let (mut resp, body) = self.head(head_request).await;
        match body {
            Body::None => {}
            Body::Length(len) => {
                while self.buf.len() < len {
                    self.fill_or_panic("reading a length-delimited body").await;
                }
                resp.body = self.buf.drain(..len).collect();
            }
            Body::Chunked => loop {
                if let Some((data, trailers, used)) = decode_chunked(&self.buf) {
                    resp.body = data;
                    resp.trailers = trailers;
                    self.buf.drain(..used);
                    break;
                }
                self.fill_or_panic("reading a chunked body").await;
            },
            Body::UntilClose => {
                let (rest, ended) = self.until_eof().await;
                assert!(ended.is_ok(), "the body ended with an error: {ended:?}");
                resp.body = rest;
            }
        }
        resp
    }

    /// Sends `request` and reads its response.
    pub(crate) async fn exchange(&mut self, request: &[u8]) -> Resp {
        self.send(request).await;
        let head_request = request.starts_with(b"HEAD ");
        self.response(head_request).await
    }

    /// Everything until the proxy closes the connection, and how the connection ended
    /// (an error such as a reset instead of a clean EOF).
    pub(crate) async fn until_eof(&mut self) -> (Vec<u8>, std::io::Result<()>) {
        loop {
            match self.fill().await {
                Ok(0) => return (std::mem::take(&mut self.buf), Ok(())),
                Ok(_) => {}
                Err(e) => return (std::mem::take(&mut self.buf), Err(e)),
            }
        }
    }
}

/// Header fields as (lowercased name, value).
pub(crate) type Fields = Vec<(String, String)>;

/// A complete chunked body at the start of `buf`: its data, trailers and length on the wire.
pub(crate) fn decode_chunked(buf: &[u8]) -> Option<(Vec<u8>, Fields, usize)> {
    let mut data = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = pos + find(&buf[pos..], b"\r\n")?;
        let line = std::str::from_utf8(&buf[pos..line_end]).expect("chunk size line");
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .unwrap_or_else(|e| panic!("chunk size {line:?}: {e}"));
        pos = line_end + 2;
        if size == 0 {
            let mut trailers = Vec::new();
            loop {
                let end = pos + find(&buf[pos..], b"\r\n")?;
                if end == pos {
                    return Some((data, trailers, end + 2));
                }
                let line = String::from_utf8_lossy(&buf[pos..end]).into_owned();
                let (name, value) = line.split_once(':').expect("trailer field");
                trailers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                pos = end + 2;
            }
        }
        if buf.len() < pos + size + 2 {
            return None;
        }
        data.extend_from_slice(&buf[pos..pos + size]);
        assert_eq!(&buf[pos + size..pos + size + 2], b"\r\n", "chunk data end");
        pos += size + 2;
    }
}

pub(crate) fn get(target: &str) -> Vec<u8> {
    request("GET", target, "")
}

pub(crate) fn request(method: &str, target: &str, extra_headers: &str) -> Vec<u8> {
    format!("{method} {target} HTTP/1.1\r\nHost: fastpath.test\r\n{extra_headers}\r\n").into_bytes()
}

pub(crate) async fn assert_ok(client: &mut Client, target: &str) {
    let resp = client.exchange(&get(target)).await;
    assert_eq!(resp.status, 200, "{target}: {resp:?}");
    assert_eq!(resp.text(), format!("ok {target}"));
}
