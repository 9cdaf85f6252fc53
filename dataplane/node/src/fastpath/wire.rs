//! HTTP/1.1 heads on the wire: a client's request head parsed in place (header values share
//! the read buffer, nothing is copied), and the heads the fast path writes.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};

use crate::proxy::HopByHop;

/// Headers accepted in one request head on the fast path (more go to the general path).
const MAX_HEADERS: usize = 100;

/// Makes room for a read of about `chunk` bytes into `buf` (reusing its memory when nothing
/// else holds it).
pub(super) fn make_room(buf: &mut BytesMut, chunk: usize) {
    if buf.capacity() - buf.len() < chunk / 4 {
        buf.reserve(chunk);
    }
}

/// Where one part of a head is: a byte range of it.
pub(super) type Span = (usize, usize);

/// Where `part`, a slice of the buffer starting at `base`, lies in that buffer (httparse
/// hands out slices; the fast path keeps ranges so the head can be frozen and shared).
pub(super) fn span(base: &[u8], part: &[u8]) -> Span {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    (start, start + part.len())
}

/// A received head — a request's or a response's — with where each header's name and value
/// are in it; nothing is copied.
#[derive(Debug, Default)]
pub struct RawHeaders {
    /// The head as received.
    pub raw: Bytes,
    /// (name, value) ranges in `raw`, in order.
    pub(super) spans: Vec<(Span, Span)>,
}

impl RawHeaders {
    /// The headers as (name, value) bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.spans
            .iter()
            .map(|(name, value)| (&self.raw[name.0..name.1], &self.raw[value.0..value.1]))
    }

    /// The first `name` header's value.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The headers as a map (values share `raw`), for header-matching routes and plugins;
    /// `None` when one is not acceptable to `http`.
    pub fn to_map(&self) -> Option<HeaderMap> {
        let mut headers = HeaderMap::with_capacity(self.spans.len() + 8);
        for (name, value) in &self.spans {
            let name = HeaderName::from_bytes(&self.raw[name.0..name.1]).ok()?;
            let value = HeaderValue::from_maybe_shared(self.raw.slice(value.0..value.1)).ok()?;
            headers.append(name, value);
        }
        Some(headers)
    }
}

/// A request head the fast path serves.
#[derive(Debug)]
pub struct RequestHead {
    /// Method.
    pub method: Method,
    /// Request target.
    pub uri: Uri,
    /// The client asked to close the connection after this request.
    pub close: bool,
    /// The head as received (`raw` is what a hand-off to the general path puts back).
    pub headers: RawHeaders,
}

/// Parses the request head at the start of `buf`. `Ok(None)`: not complete yet. `Err(raw)`:
/// not for the fast path (HTTP/1.0 or 2, a body, `Expect`, an upgrade, or anything it cannot
/// parse); `raw` is the part already taken out of `buf` (empty when nothing was).
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, Bytes> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Bytes::new()),
    };
    if req.version != Some(1) {
        return Err(Bytes::new());
    }
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Err(Bytes::new());
    };
    let method = span(buf, method.as_bytes());
    let path = span(buf, path.as_bytes());
    let mut spans = Vec::with_capacity(req.headers.len());
    let mut close = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let hands_off = name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || (name.eq_ignore_ascii_case(b"content-length") && h.value.trim_ascii() != b"0");
        if hands_off {
            return Err(Bytes::new());
        }
        if name.eq_ignore_ascii_case(b"connection") {
            close |= h
                .value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        spans.push((span(buf, name), span(buf, h.value)));
    }
    let raw = buf.split_to(len).freeze();
    let Ok(method) = Method::from_bytes(&raw[method.0..method.1]) else {
        return Err(raw);
    };
    let Ok(uri) = Uri::from_maybe_shared(raw.slice(path.0..path.1)) else {
        return Err(raw);
    };
    Ok(Some(RequestHead {
        method,
        uri,
        close,
        headers: RawHeaders { raw, spans },
    }))
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_headers(out: &mut Vec<u8>, headers: &HeaderMap, skip: &HeaderName) {
    for (name, value) in headers {
        if name != skip {
            push_header(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
}

/// The request head sent upstream (HTTP/1.1, no body).
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    host: Option<&HeaderValue>,
    headers: &HeaderMap,
) {
    request_line(out, method, path, query);
    match host {
        Some(host) => {
            push_header(out, b"host", host.as_bytes());
            push_headers(out, headers, &header::HOST);
        }
        // No usable Host of our own (never for a valid target): the client's stays.
        None => {
            for (name, value) in headers {
                push_header(out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The request head sent upstream (HTTP/1.1, no body) written from the client's headers
/// as received ([`crate::proxy::upstream_request_headers_raw`] picks and adds headers).
pub fn write_request_head_raw(
    out: &mut Vec<u8>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    emit_headers: impl FnOnce(&mut dyn FnMut(&[u8], &[u8])),
) {
    request_line(out, method, path, query);
    emit_headers(&mut |name, value| push_header(out, name, value));
    out.extend_from_slice(b"\r\n");
}

fn request_line(out: &mut Vec<u8>, method: &Method, path: &str, query: Option<&str>) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The head of a relayed response; `chunked` adds the transfer coding the body keeps.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    chunked: bool,
    close: bool,
) {
    status_line(out, status);
    push_headers(out, headers, &header::TRANSFER_ENCODING);
    end_head(out, !headers.contains_key(header::DATE), chunked, close);
}

/// The headers the proxy itself adds at the end of a head, then the blank line.
fn end_head(out: &mut Vec<u8>, date: bool, chunked: bool, close: bool) {
    if date {
        push_date(out);
    }
    if chunked {
        push_header(out, b"transfer-encoding", b"chunked");
    }
    if close {
        push_header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

/// The head of a relayed response, written from the upstream's headers as received:
/// hop-by-hop ones left out (those `Connection` names too), `Via` added, `Date` added when
/// missing, `chunked` re-declaring the transfer coding the body keeps. (With plugins that
/// change response headers the proxy goes through a header map and
/// [`write_response_head`] instead.)
pub fn write_relayed_head<'h>(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
    has_date: bool,
    chunked: bool,
    close: bool,
) {
    let hop_by_hop = HopByHop::of(headers.clone());
    status_line(out, status);
    for (name, value) in headers {
        if !hop_by_hop.contains(name) {
            push_header(out, name, value);
        }
    }
    push_header(out, b"via", b"1.1 fleetgate");
    end_head(out, !has_date, chunked, close);
}

/// The head of a local answer with a body of `length` bytes.
pub fn write_local_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    length: usize,
    close: bool,
) {
    status_line(out, status);
    push_headers(out, headers, &header::CONTENT_LENGTH);
    let mut digits = itoa::Buffer::new();
    push_header(out, b"content-length", digits.format(length).as_bytes());
    end_head(out, true, false, close);
}

thread_local! {
    /// The `Date` value of the current second.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.0 != second || date.1.is_empty() {
            *date = (second, httpdate::fmt_http_date(now));
        }
        push_header(out, b"date", date.1.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<RequestHead>, Bytes> {
        let mut buf = BytesMut::from(text);
        parse_request(&mut buf)
    }

    #[test]
    fn a_plain_get_is_parsed_and_leaves_the_next_request_in_the_buffer() {
        let mut buf = BytesMut::from(
            "GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next",
        );
        let head = parse_request(&mut buf)
            .expect("fast path")
            .expect("complete");
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri.path(), "/a/b");
        assert_eq!(head.uri.query(), Some("x=1"));
        assert_eq!(head.headers.get(b"HOST"), Some(&b"example.com"[..]));
        let map = head.headers.to_map().expect("valid headers");
        assert_eq!(map["host"], "example.com");
        assert_eq!(map.get_all("x-two").iter().count(), 2);
        assert_eq!(head.headers.iter().count(), 3);
        assert!(!head.close);
        assert_eq!(&buf[..], b"GET /next");
    }

    #[test]
    fn requests_the_fast_path_does_not_serve_are_refused_whole() {
        for text in [
            "GET / HTTP/1.0\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(text);
            let refused = parse_request(&mut buf).expect_err(text);
            let mut whole = refused.to_vec();
            whole.extend_from_slice(&buf);
            assert_eq!(whole, text.as_bytes(), "nothing lost: {text}");
        }
    }

    #[test]
    fn a_partial_head_waits_and_connection_close_is_seen() {
        assert!(parse("GET / HTTP/1.1\r\nHost: a").expect("ok").is_none());
        let head = parse("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert!(head.close);
        let empty = parse("DELETE /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .expect("ok")
            .expect("complete");
        assert_eq!(empty.method, Method::DELETE);
    }

    #[test]
    fn the_upstream_request_head_carries_our_host_and_the_edited_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("client.example"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("127.0.0.1"));
        let mut out = Vec::new();
        let host = HeaderValue::from_static("upstream:8080");
        write_request_head(
            &mut out,
            &Method::GET,
            "/p",
            Some("q=1"),
            Some(&host),
            &headers,
        );
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "GET /p?q=1 HTTP/1.1\r\nhost: upstream:8080\r\nx-forwarded-for: 127.0.0.1\r\n\r\n"
        );
    }

    /// Both ways of writing the upstream head — from a header map edited by
    /// `upstream_request_headers`, and from the bytes received by
    /// `upstream_request_headers_raw` — send the same request.
    #[test]
    fn the_raw_and_the_header_map_upstream_heads_are_the_same_request() {
        let downstream = crate::proxy::Downstream::new(
            "192.0.2.7:50000".parse().expect("addr"),
            8000,
            false,
            None,
        );
        let requests = [
            "GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
            "GET /b?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nConnection: keep-alive, X-Custom\r\nX-Custom: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: x\r\nX-Kept: yes\r\n\r\n",
            "DELETE /c HTTP/1.1\r\nhost: Example.COM\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2\r\nX-Forwarded-Host: evil\r\nX-Real-IP: spoof\r\nX-Forwarded-Proto: https\r\nVia: 1.0 other\r\nContent-Length: 0\r\n\r\n",
            "GET /d HTTP/1.1\r\nX-Forwarded-For:\r\nA: 1\r\na: 2\r\n\r\n",
        ];
        let lines = |out: &[u8]| {
            let text = String::from_utf8(out.to_vec()).expect("utf8");
            let mut lines: Vec<String> = text
                .split("\r\n")
                .skip(1)
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (name, value) = l.split_once(": ").expect("header line");
                    format!("{}: {value}", name.to_ascii_lowercase())
                })
                .collect();
            lines.sort();
            (text.lines().next().map(str::to_string), lines)
        };
        for text in requests {
            let mut buf = BytesMut::from(text);
            let head = parse_request(&mut buf)
                .expect("fast path")
                .expect("complete");
            let request_host = head
                .headers
                .get(b"host")
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .unwrap_or_default();
            for host in [Some(HeaderValue::from_static("upstream:9000")), None] {
                let mut map = head.headers.to_map().expect("valid");
                crate::proxy::upstream_request_headers(&mut map, &downstream, &request_host, false);
                let mut via_map = Vec::new();
                write_request_head(
                    &mut via_map,
                    &head.method,
                    "/up",
                    head.uri.query(),
                    host.as_ref(),
                    &map,
                );
                let mut via_raw = Vec::new();
                write_request_head_raw(
                    &mut via_raw,
                    &head.method,
                    "/up",
                    head.uri.query(),
                    |emit| {
                        crate::proxy::upstream_request_headers_raw(
                            head.headers.iter(),
                            &downstream,
                            &request_host,
                            host.as_ref(),
                            emit,
                        )
                    },
                );
                assert_eq!(
                    lines(&via_map),
                    lines(&via_raw),
                    "{text:?} with host {host:?}"
                );
            }
        }
    }
}
