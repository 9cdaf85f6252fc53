//! The HTTP/1.1 fast path against real sockets: response framing (length, chunked, until
//! close, no body), upstream keep-alive pooling and stale pooled connections, pipelining,
//! the hand-off to the general path on the same connection, and response head rewriting.
//!
//! The upstream is a raw-TCP script (chosen by the request path) so the exact bytes and
//! timing are under the test's control; the client is a raw `TcpStream` where an HTTP client
//! library would hide the behaviour under test.

mod harness;
#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::Ordering;

use harness::*;
use support::{echo_upstream, eventually, Dp};

#[tokio::test]
async fn a_chunked_body_arrives_decoded_exactly_and_the_connection_stays_usable() {
    let (up, stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    let resp = client.exchange(&get("/chunked")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.text(), CHUNKED_DECODED);
    assert_eq!(
        resp.trailers,
        vec![("x-checksum".to_string(), "abc".to_string())]
    );
    assert_eq!(resp.header("connection"), None, "keep-alive: {resp:?}");

    // The framing was followed on both sides: the same client and upstream connections
    // carry the next exchange.
    assert_ok(&mut client, "/after-chunked").await;
    assert_eq!(stats.accepts(), 1, "{:?}", stats.requests());
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn a_body_until_close_is_relayed_whole_and_the_client_connection_closes() {
    let (up, stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    client.send(&get("/close")).await;
    let (head, body) = client.head(false).await;
    assert_eq!(head.status, 200);
    assert!(matches!(body, Body::UntilClose), "{head:?}");
    assert_eq!(head.header("connection"), Some("close"));
    let (rest, ended) = client.until_eof().await;
    assert!(ended.is_ok(), "clean close expected: {ended:?}");
    assert_eq!(String::from_utf8_lossy(&rest), "part one, part two");

    // That upstream connection is gone; the next client gets a fresh one.
    let mut next = Client::connect(&dp).await;
    assert_ok(&mut next, "/after-close").await;
    assert_eq!(stats.accepts(), 2);
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn a_head_response_has_no_body_whatever_its_length_says() {
    let (up, stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    let resp = client.exchange(&request("HEAD", "/head", "")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("1000"));
    // No body bytes may follow: the next response must start right here.
    assert_ok(&mut client, "/after-head").await;
    assert!(client.buf.is_empty(), "stray bytes: {:?}", client.buf);
    assert_eq!(stats.accepts(), 1, "the upstream connection was reused");
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn a_204_has_no_body_and_the_next_request_works() {
    let (up, stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    let resp = client.exchange(&get("/204")).await;
    assert_eq!(resp.status, 204);
    assert_eq!(resp.header("x-script"), Some("204"));
    assert_eq!(resp.header("transfer-encoding"), None);
    assert_ok(&mut client, "/after-204").await;
    assert!(client.buf.is_empty(), "stray bytes: {:?}", client.buf);
    assert_eq!(stats.accepts(), 1);
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn a_one_mebibyte_body_arrives_byte_for_byte() {
    let (up, _stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    let resp = client.exchange(&get("/big")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("1048576"));
    assert_eq!(resp.body.len(), BIG_LEN);
    assert!(resp.body == big_body(), "the body bytes differ");
    assert_ok(&mut client, "/after-big").await;
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn an_upstream_closing_mid_body_ends_the_client_connection_early() {
    let (up, _stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    client.send(&get("/early-close")).await;
    let (head, body) = client.head(false).await;
    assert_eq!(head.status, 200);
    assert!(matches!(body, Body::Length(100)), "{head:?}");
    // Bounded by WAIT in `fill`: the proxy must not keep the client waiting for 90 bytes.
    let (rest, _ended) = client.until_eof().await;
    assert_eq!(rest, b"0123456789", "only the bytes the upstream sent");

    // The proxy itself is fine.
    let mut next = Client::connect(&dp).await;
    assert_ok(&mut next, "/after-early-close").await;
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn garbage_instead_of_a_status_line_is_a_502_in_json() {
    let (up, _stats) = scripted_upstream().await;
    let dp = proxy_to(up, "    retries: 0\n", &[]).await;
    let mut client = Client::connect(&dp).await;

    let resp = client.exchange(&get("/bad")).await;
    assert_eq!(resp.status, 502, "{resp:?}");
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{resp:?}"
    );
    assert_eq!(
        resp.json()["message"],
        "An invalid response was received from the upstream server"
    );
    // A local error keeps the client connection.
    assert_ok(&mut client, "/after-bad").await;
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn a_1xx_interim_response_is_skipped() {
    let (up, _stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    let resp = client.exchange(&get("/interim")).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), "final");
    assert_ok(&mut client, "/after-interim").await;
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn twenty_requests_on_one_client_connection_use_one_upstream_connection() {
    let (up, stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    for i in 0..20 {
        assert_ok(&mut client, &format!("/keepalive/{i}")).await;
    }
    assert_eq!(stats.requests().len(), 20);
    assert_eq!(stats.accepts(), 1, "pooled: {:?}", stats.requests());
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn an_upstream_closing_its_response_connection_is_not_pooled() {
    let (up, stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    let resp = client.exchange(&get("/ok-close")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok-close");
    // The upstream's `connection: close` is hop-by-hop: the client connection stays open.
    assert_eq!(resp.header("connection"), None, "{resp:?}");
    assert_ok(&mut client, "/after-ok-close").await;
    assert_eq!(stats.accepts(), 2);
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_while_idle_is_replaced() {
    let (up, stats) = scripted_upstream().await;
    let dp = proxy_to(up, "    retries: 0\n", &[]).await;
    let mut client = Client::connect(&dp).await;

    assert_ok(&mut client, "/close-after").await;
    eventually(WAIT, "the upstream to close its idle connection", || {
        let closed = stats.idle_closed.load(Ordering::SeqCst);
        async move { (closed == 1).then_some(()) }
    })
    .await;
    // Whether the pool's probe sees the close or the request fails on it and is retried,
    // the answer is a 200 from a new connection.
    assert_ok(&mut client, "/after-idle-close").await;
    assert_eq!(
        stats.accepts(),
        2,
        "a new connection: {:?}",
        stats.requests()
    );
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn a_pooled_connection_closed_as_it_is_reused_is_retried_on_a_fresh_one() {
    let (up, stats) = scripted_upstream().await;
    // No retries configured: the request only succeeds through the stale-connection retry.
    let dp = proxy_to(up, "    retries: 0\n", &[]).await;
    let mut client = Client::connect(&dp).await;

    assert_ok(&mut client, "/doom").await;
    // The upstream reads the next request on that connection and closes it unanswered.
    assert_ok(&mut client, "/after-doom").await;
    assert_eq!(
        stats.dropped.load(Ordering::SeqCst),
        1,
        "the pooled connection was reused and dropped: {:?}",
        stats.requests()
    );
    assert_eq!(stats.accepts(), 2, "{:?}", stats.requests());
    assert_eq!(
        stats.requests(),
        vec!["GET /doom", "GET /after-doom", "GET /after-doom"]
    );
    dp.dp.shutdown().await;
}

/// The retry after a stale pooled connection is meant to go to a fresh connection; with two
/// stale connections in the pool it must not take the second one (and fail with no retries).
#[tokio::test]
async fn the_stale_connection_retry_uses_a_fresh_connection_not_another_pooled_one() {
    let (up, stats) = scripted_upstream().await;
    // One worker: one pool for every client connection.
    let dp = proxy_to(up, "    retries: 0\n", &[("proxy_workers", "1")]).await;
    let mut first = Client::connect(&dp).await;
    let mut second = Client::connect(&dp).await;
    // Two requests at once: two upstream connections, both pooled and doomed after.
    first.send(&get("/doom?delay=300")).await;
    second.send(&get("/doom?delay=300")).await;
    for client in [&mut first, &mut second] {
        let resp = client.response(false).await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    assert_eq!(stats.accepts(), 2);

    let resp = first.exchange(&get("/after-two-dooms")).await;
    assert_eq!(
        resp.status,
        200,
        "{resp:?}; upstream saw {:?}",
        stats.requests()
    );
    assert_eq!(resp.text(), "ok /after-two-dooms");
    assert_eq!(stats.accepts(), 3, "{:?}", stats.requests());
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (up, stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    // The first is slow, so the others arrive while the proxy waits for the upstream.
    let mut all = get("/slowish");
    all.extend_from_slice(&get("/chunked"));
    all.extend_from_slice(&request("HEAD", "/head", ""));
    all.extend_from_slice(&get("/third"));
    client.send(&all).await;

    let first = client.response(false).await;
    assert_eq!((first.status, first.text()), (200, "ok /slowish".into()));
    let second = client.response(false).await;
    assert_eq!(
        (second.status, second.text()),
        (200, CHUNKED_DECODED.into())
    );
    let third = client.response(true).await;
    assert_eq!(third.status, 200);
    assert_eq!(third.header("content-length"), Some("1000"));
    let fourth = client.response(false).await;
    assert_eq!((fourth.status, fourth.text()), (200, "ok /third".into()));
    assert_eq!(
        stats.requests(),
        vec!["GET /slowish", "GET /chunked", "HEAD /head", "GET /third"]
    );
    assert_eq!(stats.accepts(), 1);
    dp.dp.shutdown().await;
}

async fn echo_dp() -> Dp {
    let up = echo_upstream().await;
    Dp::start(&format!(
        r#"_format_version: "3.0"
services:
  - name: echo
    url: http://{up}
    routes:
      - name: all
        paths: [/]
        strip_path: false
"#
    ))
    .await
}

fn assert_echo(resp: &Resp, method: &str, path: &str, body_len: u64) {
    assert_eq!(resp.status, 200, "{resp:?}");
    let echo = resp.json();
    assert_eq!(echo["method"], method, "{echo}");
    assert_eq!(echo["path"], path, "{echo}");
    assert_eq!(echo["body_len"], body_len, "{echo}");
}

#[tokio::test]
async fn a_request_with_a_body_hands_the_connection_to_the_general_path() {
    let dp = echo_dp().await;
    let mut client = Client::connect(&dp).await;

    let resp = client.exchange(&get("/one")).await;
    assert_echo(&resp, "GET", "/one", 0);
    let mut post = request("POST", "/two", "Content-Length: 5\r\n");
    post.extend_from_slice(b"hello");
    let resp = client.exchange(&post).await;
    assert_echo(&resp, "POST", "/two", 5);
    let resp = client.exchange(&get("/three")).await;
    assert_echo(&resp, "GET", "/three", 0);
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn a_pipelined_body_request_is_handed_over_with_the_bytes_after_it() {
    let dp = echo_dp().await;
    let mut client = Client::connect(&dp).await;

    let mut all = get("/one");
    all.extend_from_slice(&request("POST", "/two", "Content-Length: 5\r\n"));
    all.extend_from_slice(b"hello");
    all.extend_from_slice(&get("/three"));
    client.send(&all).await;
    assert_echo(&client.response(false).await, "GET", "/one", 0);
    assert_echo(&client.response(false).await, "POST", "/two", 5);
    assert_echo(&client.response(false).await, "GET", "/three", 0);
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn connection_close_from_the_client_closes_after_the_response() {
    let (up, _stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    let resp = client
        .exchange(&request("GET", "/bye", "Connection: close\r\n"))
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "ok /bye");
    assert_eq!(resp.header("connection"), Some("close"));
    let (rest, ended) = client.until_eof().await;
    assert!(ended.is_ok(), "{ended:?}");
    assert!(rest.is_empty(), "nothing after the response: {rest:?}");
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn an_http_1_0_request_is_answered_by_the_general_path() {
    let (up, stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    client
        .send(b"GET /old HTTP/1.0\r\nHost: fastpath.test\r\n\r\n")
        .await;
    let resp = client.response(false).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), "ok /old");
    assert!(
        resp.header("via").is_some_and(|v| v.contains("fleetgate")),
        "{resp:?}"
    );
    // HTTP/1.0 without keep-alive: the connection ends after the response.
    let (rest, _) = client.until_eof().await;
    assert!(rest.is_empty(), "nothing after the response: {rest:?}");
    assert_eq!(stats.requests(), vec!["GET /old"]);
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_dropped_and_via_and_date_are_right() {
    let (up, _stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    let resp = client.exchange(&get("/hop")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hop");
    assert_eq!(
        resp.header("x-custom"),
        None,
        "named by Connection: {resp:?}"
    );
    assert_eq!(resp.header("keep-alive"), None, "{resp:?}");
    assert_eq!(resp.header("connection"), None, "{resp:?}");
    assert_eq!(resp.header("x-kept"), Some("yes"));
    assert_eq!(resp.header("via"), Some("1.1 fleetgate"));
    assert_eq!(resp.header("date"), Some(UPSTREAM_DATE));
    assert_eq!(resp.version, 1);

    // Without an upstream Date the proxy adds one.
    let resp = client.exchange(&get("/plain")).await;
    let date = resp.header("date").expect("a Date header");
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn a_client_hanging_up_while_the_upstream_is_slow_is_not_waited_for() {
    let (up, stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    client.send(&get("/slow")).await;
    eventually(WAIT, "the upstream to get the request", || {
        let seen = stats.requests().len();
        async move { (seen == 1).then_some(()) }
    })
    .await;
    drop(client);
    // The upstream answers only after 30 s; the proxy must drop its connection long before.
    eventually(WAIT, "the proxy to hang up on the upstream", || {
        let abandoned = stats.abandoned.load(Ordering::SeqCst);
        async move { (abandoned == 1).then_some(()) }
    })
    .await;
    dp.dp.shutdown().await;
}

/// A client may pipeline a request behind one whose response turns out to be delimited by
/// the close of the connection. The proxy must still end that body with a clean close: when
/// it closes the client socket with the pipelined request unread, the kernel resets the
/// connection and drops the part of the body still queued for sending, so a body larger
/// than the socket buffers arrives truncated, and its end looks like a failure.
#[tokio::test]
async fn a_large_body_until_close_is_not_truncated_by_a_request_pipelined_behind_it() {
    let (up, _stats) = scripted_upstream().await;
    let dp = proxy_to(up, "", &[]).await;
    let mut client = Client::connect(&dp).await;

    client.send(&get("/close-big")).await;
    let (head, body) = client.head(false).await;
    assert!(matches!(body, Body::UntilClose), "{head:?}");
    client.send(&get("/pipelined-behind-close")).await;
    // A slow reader: the body backs up into the proxy's socket buffers (1 MiB fits there:
    // the proxy finishes and closes while the client is not reading).
    pause(500).await;
    let (rest, ended) = client.until_eof().await;
    assert_eq!(rest.len(), BIG_LEN, "the whole body ({ended:?})");
    assert!(rest == big_body(), "the body bytes differ");
    assert!(ended.is_ok(), "a clean close, not {ended:?}");
    dp.dp.shutdown().await;
}
