//! A real HTTP upstream on 127.0.0.1 answering `200 {"upstream": <name>, "path": …}`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A running upstream; it lives as long as the test's runtime.
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
}

impl Upstream {
    /// Starts an upstream that names itself `name` in every answer.
    pub async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the upstream");
        let addr = listener.local_addr().expect("upstream address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service =
                        service_fn(move |req: Request<hyper::body::Incoming>| async move {
                            let body =
                                serde_json::json!({"upstream": name, "path": req.uri().path()});
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                                body.to_string(),
                            ))))
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr }
    }
}
