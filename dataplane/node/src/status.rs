//! The status listener: `/status` (what the node runs and why), `/ready`, `/metrics`.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::watch;

use crate::cluster::ClusterState;
use crate::gateway::Gateway;
use crate::proxy::{full, json_error, ProxyBody};

/// Identity of this node, shown by `/status`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Stable node id (kept in the prefix dir).
    pub node_id: uuid::Uuid,
    /// Host name.
    pub hostname: String,
    /// Software version.
    pub version: &'static str,
    /// The cluster link's state, when the node has a `cluster_control_plane` (ignored by
    /// [`crate::cluster::ClusterClient::spawn`], which publishes it).
    pub cluster: Option<watch::Receiver<ClusterState>>,
    /// Fallback storage import/export, when configured.
    pub fallback: Option<Arc<crate::fallback::FallbackStatus>>,
}

/// Answers one status request.
pub fn handle(
    gateway: &Arc<Gateway>,
    node: &NodeInfo,
    req: &Request<Incoming>,
) -> Response<ProxyBody> {
    match req.uri().path() {
        "/status" => {
            let current = gateway.current();
            let applied_at = current
                .applied_at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let cluster = node
                .cluster
                .as_ref()
                .map(|c| c.borrow().clone())
                .unwrap_or_default();
            let body = json!({
                "node_id": node.node_id,
                "hostname": node.hostname,
                "version": node.version,
                "config_hash": current.hash.to_string(),
                "config_version": current.version,
                "config_source": current.source,
                "config_applied_at": applied_at,
                "ready": gateway.is_loaded(),
                "entities": current.counts,
                "routes": current.router.len(),
                "clustered": node.cluster.is_some(),
                "connected": cluster.connected,
                "last_ping": cluster.last_ping_unix.map(crate::license::rfc3339),
                "last_error": cluster.last_error,
                "license": gateway.license.status_json(),
                "telemetry": gateway.telemetry.status(),
                "fallback": node.fallback.as_ref().map(|f| f.view()),
                "requests_total": gateway.metrics.total_requests(),
            });
            json_response(StatusCode::OK, body)
        }
        "/ready" => {
            if gateway.is_loaded() {
                json_response(StatusCode::OK, json!({"ready": true}))
            } else {
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no configuration loaded yet",
                )
            }
        }
        "/metrics" => {
            let mut response = Response::new(full(Bytes::from(gateway.metrics.render())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
