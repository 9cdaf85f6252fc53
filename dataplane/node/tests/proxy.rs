//! The proxy against real sockets: routing, path and host handling, upstream failures,
//! health checks, plugins, WebSocket, HTTPS by SNI and HTTP/2.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{client, closed_port, echo_upstream, websocket_echo_upstream, Dp};

async fn get_json(url: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = client().get(url).send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

#[tokio::test]
async fn routes_strip_paths_preserve_hosts_and_forward_client_details() {
    let up = echo_upstream().await;
    let dp = Dp::start(&format!(
        r#"_format_version: "3.0"
services:
  - name: api
    url: http://{up}/base
    routes:
      - name: stripped
        paths: [/api]
      - name: kept
        paths: [/keep]
        strip_path: false
        preserve_host: true
        hosts: [shop.example.com]
"#
    ))
    .await;
    let (status, body, headers) = get_json(&format!("{}/api/orders?x=1", dp.base)).await;
    assert_eq!(status, 200);
    assert_eq!(body["path"], "/base/orders");
    assert_eq!(body["query"], "x=1");
    assert_eq!(body["headers"]["host"], up.to_string());
    assert_eq!(body["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(body["headers"]["x-forwarded-proto"], "http");
    assert_eq!(
        body["headers"]["x-forwarded-port"],
        dp.dp.proxy_addr.port().to_string()
    );
    assert!(body["headers"]["via"]
        .as_str()
        .unwrap_or("")
        .contains("fleetgate"));
    assert!(headers.get("via").is_some());
    let resp = client()
        .get(format!("{}/keep/x", dp.base))
        .header("host", "shop.example.com")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["path"], "/base/keep/x");
    assert_eq!(body["headers"]["host"], "shop.example.com");
    assert_eq!(body["headers"]["x-forwarded-host"], "shop.example.com");
    // Same path, other host: no route.
    let (status, body, _) = get_json(&format!("{}/keep/x", dp.base)).await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "no Route matched with those values");
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn upstream_failures_map_to_502_504_and_503() {
    let up = echo_upstream().await;
    let dead = closed_port().await;
    let dead2 = closed_port().await;
    let dp = Dp::start(&format!(
        r#"_format_version: "3.0"
services:
  - name: slow
    url: http://{up}
    read_timeout: 200
    retries: 0
    routes: [{{name: slow, paths: [/slow]}}]
  - name: gone
    url: http://{dead}
    retries: 1
    routes: [{{name: gone, paths: [/gone]}}]
  - name: pool
    host: pool.internal
    retries: 0
    routes: [{{name: pool, paths: [/pool]}}]
upstreams:
  - name: pool.internal
    healthchecks:
      passive:
        unhealthy: {{tcp_failures: 1}}
    targets:
      - target: {dead}
      - target: {dead2}
"#
    ))
    .await;
    let (status, body, _) = get_json(&format!("{}/slow/delay/2000", dp.base)).await;
    assert_eq!(status, 504);
    assert_eq!(body["message"], "The upstream server is timed out");
    let (status, _, _) = get_json(&format!("{}/slow/delay/10", dp.base)).await;
    assert_eq!(status, 200);
    let (status, body, _) = get_json(&format!("{}/gone", dp.base)).await;
    assert_eq!(status, 502);
    assert!(body["message"].as_str().is_some());
    // Both targets refuse connections: each trips its passive check, then none is healthy.
    let _ = get_json(&format!("{}/pool", dp.base)).await;
    let _ = get_json(&format!("{}/pool", dp.base)).await;
    let (status, body, _) = get_json(&format!("{}/pool", dp.base)).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["message"],
        "failure to get a peer from the ring-balancer"
    );
    let metrics = client()
        .get(dp.status_url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("fleetgate_dp_upstream_errors_total{kind=\"timeout\"} 1"),
        "{metrics}"
    );
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn plugins_key_auth_rate_limiting_cors_and_size_limit() {
    let up = echo_upstream().await;
    let dp = Dp::start(&format!(
        r#"_format_version: "3.0"
services:
  - name: api
    url: http://{up}
    routes:
      - name: secured
        paths: [/secured]
        plugins:
          - name: key-auth
          - name: rate-limiting
            config: {{minute: 3}}
      - name: open
        paths: [/open]
        plugins:
          - name: cors
            config: {{origins: ["https://app.example.com"], max_age: 600}}
          - name: request-size-limiting
            config: {{allowed_payload_size: 1, size_unit: kilobytes}}
consumers:
  - username: alice
    keyauth_credentials: [{{key: alice-key}}]
"#
    ))
    .await;
    let url = format!("{}/secured", dp.base);
    let resp = client().get(&url).send().await.expect("send");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["message"],
        "No API key found in request"
    );
    let resp = client()
        .get(&url)
        .header("apikey", "wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 401);
    for i in 0..3 {
        let resp = client()
            .get(&url)
            .header("apikey", "alice-key")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(
            resp.headers()["x-ratelimit-remaining-minute"].to_str().ok(),
            Some((2 - i).to_string().as_str())
        );
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["headers"]["x-consumer-username"], "alice");
    }
    let resp = client()
        .get(&url)
        .header("apikey", "alice-key")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(resp.headers()["ratelimit-remaining"], "0");

    let open = format!("{}/open", dp.base);
    let preflight = client()
        .request(reqwest::Method::OPTIONS, &open)
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("send");
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(preflight.headers()["access-control-max-age"], "600");
    let simple = client()
        .get(&open)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("send");
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );

    let big = client()
        .post(&open)
        .body(vec![b'x'; 4096])
        .send()
        .await
        .expect("send");
    assert_eq!(big.status(), 413);
    let small = client()
        .post(&open)
        .body(vec![b'x'; 100])
        .send()
        .await
        .expect("send");
    assert_eq!(small.status(), 200);
    assert_eq!(small.json::<Value>().await.expect("json")["body_len"], 100);
    // A chunked body without Content-Length is limited while streaming.
    let chunks =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
    let streamed = client()
        .post(&open)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("send");
    assert_eq!(streamed.status(), 413);
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    use futures_util::{SinkExt, StreamExt};
    let ws = websocket_echo_upstream().await;
    let dp = Dp::start(&format!(
        r#"_format_version: "3.0"
services:
  - name: ws
    url: http://{ws}
    routes: [{{name: ws, paths: [/ws]}}]
"#
    ))
    .await;
    let url = format!("ws://{}/ws", dp.dp.proxy_addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect through proxy");
    assert_eq!(response.status(), 101);
    for text in ["hello", "through", "fleetgate"] {
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("echo in time")
            .expect("a message")
            .expect("ok");
        assert_eq!(echoed.into_text().expect("text").as_str(), text);
    }
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let up = echo_upstream().await;
    let dp = Dp::start(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://{up}\n    routes: [{{name: a, paths: [/]}}]\n"
    ))
    .await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let resp = h2.get(format!("{}/x", dp.base)).send().await.expect("send");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["path"], "/x");
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn read_timeout_cuts_off_a_stalled_response_body() {
    let stall = support::stalling_upstream().await;
    let dp = Dp::start(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{stall}\n    read_timeout: 300\n    routes: [{{name: s, paths: [/]}}]\n"
    ))
    .await;
    let resp = client()
        .get(format!("{}/x", dp.base))
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(resp.status(), 200);
    let started = std::time::Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(10), resp.bytes())
        .await
        .expect("the proxy ends the stalled body");
    assert!(body.is_err(), "a stalled body must not complete");
    assert!(started.elapsed() < Duration::from_secs(5));
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn write_timeout_ends_a_request_the_upstream_stops_reading() {
    let deaf = support::deaf_upstream().await;
    let dp = Dp::start(&format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://{deaf}\n    write_timeout: 300\n    read_timeout: 60000\n    routes: [{{name: s, paths: [/]}}]\n"
    ))
    .await;
    // Far more than the socket buffers hold, so writes to the upstream must stall.
    let chunks = futures_util::stream::iter(
        (0..256).map(|_| Ok::<_, std::io::Error>(vec![b'z'; 256 * 1024])),
    );
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        client()
            .post(format!("{}/upload", dp.base))
            .body(reqwest::Body::wrap_stream(chunks))
            .send(),
    )
    .await
    .expect("the proxy answers before the client gives up");
    match resp {
        Ok(resp) => assert_eq!(resp.status(), 504),
        // The proxy may answer and close while the client is still sending; then the client
        // sees a broken pipe instead of the status. Either way the request ended.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e:?}"),
    }
    dp.dp.shutdown().await;
}

#[tokio::test]
async fn https_only_routes_answer_plain_http_with_426_or_a_redirect() {
    let up = echo_upstream().await;
    let dp = Dp::start(&format!(
        r#"_format_version: "3.0"
services:
  - name: s
    url: http://{up}
    routes:
      - name: upgrade
        paths: [/secure]
        protocols: [https]
      - name: moved
        paths: [/moved]
        protocols: [https]
        https_redirect_status_code: 301
"#
    ))
    .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = no_redirects
        .get(format!("{}/secure/x", dp.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 426);
    assert_eq!(resp.headers()["upgrade"], "TLS/1.2, HTTP/1.1");
    let resp = no_redirects
        .get(format!("{}/moved/x?a=1", dp.base))
        .header("host", "shop.example.com:8000")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 301);
    assert_eq!(
        resp.headers()["location"],
        "https://shop.example.com/moved/x?a=1"
    );
    let resp = no_redirects
        .get(format!("{}/nothing", dp.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    dp.dp.shutdown().await;
}
