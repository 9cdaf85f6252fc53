//! Table-driven test of `upstream_path`: Kong's strip_path / path_handling rules.

use fleetgate_config::{GatewayConfig, PathHandling, Route, Uuid};
use fleetgate_router::{upstream_path, RequestFacts, Router, Scheme};
use http::HeaderMap;

/// One row of Kong's upstream path table.
struct PathRow {
    service: Option<&'static str>,
    route_path: Option<&'static str>,
    strip: bool,
    handling: PathHandling,
    request: &'static str,
    want: &'static str,
}

const fn row(
    service: Option<&'static str>,
    route_path: Option<&'static str>,
    strip: bool,
    handling: PathHandling,
    request: &'static str,
    want: &'static str,
) -> PathRow {
    PathRow {
        service,
        route_path,
        strip,
        handling,
        request,
        want,
    }
}

#[test]
fn upstream_path_table() {
    use PathHandling::{V0, V1};
    let s = Some("/s");
    let rows = [
        // Kong Admin API docs, "Path handling algorithms" table.
        row(s, Some("/fv0"), false, V0, "/fv0req", "/s/fv0req"),
        row(s, Some("/fv1"), false, V1, "/fv1req", "/sfv1req"),
        row(s, Some("/tv0"), true, V0, "/tv0req", "/s/req"),
        row(s, Some("/tv1"), true, V1, "/tv1req", "/sreq"),
        row(s, Some("/fv0/"), false, V0, "/fv0/req", "/s/fv0/req"),
        row(s, Some("/fv1/"), false, V1, "/fv1/req", "/sfv1/req"),
        row(s, Some("/tv0/"), true, V0, "/tv0/req", "/s/req"),
        row(s, Some("/tv1/"), true, V1, "/tv1/req", "/sreq"),
        // Further v0 branches of Kong's get_upstream_uri_v0.
        row(s, Some("/r"), true, V0, "/r", "/s"),
        row(s, Some("/r"), true, V0, "/r/", "/s/"),
        row(s, Some("/r"), true, V0, "/r/x", "/s/x"),
        row(Some("/s/"), Some("/r"), true, V0, "/r", "/s"),
        row(Some("/s/"), Some("/r"), true, V0, "/r/x", "/s/x"),
        row(Some("/s/"), Some("/r/"), true, V0, "/r/x", "/s/x"),
        row(Some("/s/"), Some("/r/"), true, V0, "/r/", "/s/"),
        row(Some("/s/"), Some("/r"), false, V0, "/r/x", "/s/r/x"),
        row(s, Some("/r"), false, V0, "/r/x", "/s/r/x"),
        row(s, None, false, V0, "/", "/s"),
        row(s, None, true, V0, "/x", "/s/x"),
        row(None, Some("/r"), true, V0, "/r", "/"),
        row(None, Some("/r"), true, V0, "/r/x", "/x"),
        row(None, Some("/r"), true, V0, "/rx", "/x"),
        row(None, Some("/r"), false, V0, "/r/x", "/r/x"),
        row(None, None, true, V0, "/a/b", "/a/b"),
        row(None, Some(r"~/u/\d+"), true, V0, "/u/12/p", "/p"),
        // Dot segments right after the stripped prefix are dropped (sanitize_uri_postfix).
        row(None, Some("/r"), true, V0, "/r../x", "/x"),
        row(s, Some("/r"), true, V0, "/r..", "/s"),
        // v1 with a trailing-slash service path collapses the double slash.
        row(Some("/s/"), Some("/r"), true, V1, "/r/x", "/s/x"),
        row(Some("/s/"), Some("/r"), false, V1, "/r/x", "/s/r/x"),
        row(None, Some("/r"), true, V1, "/r/x", "/x"),
    ];
    for (i, r) in rows.iter().enumerate() {
        let mut route = Route {
            id: Uuid::from_u128(1),
            hosts: r.route_path.is_none().then(|| vec!["h".to_owned()]),
            ..Route::default()
        };
        route.paths = r.route_path.map(|p| vec![p.to_owned()]);
        route.strip_path = r.strip;
        route.path_handling = r.handling;
        let cfg = GatewayConfig {
            routes: vec![route],
            ..GatewayConfig::default()
        };
        let router = Router::build(&cfg).expect("build");
        let h = HeaderMap::new();
        let facts = RequestFacts {
            method: "GET",
            host: "h",
            path: r.request,
            scheme: Scheme::Http,
            headers: &h,
            sni: None,
        };
        let m = router
            .find(&facts)
            .unwrap_or_else(|| panic!("row {i}: no match"));
        assert_eq!(
            upstream_path(r.request, &m, r.service),
            r.want,
            "row {i}: service {:?} route {:?} strip {} {:?} request {}",
            r.service,
            r.route_path,
            r.strip,
            r.handling,
            r.request
        );
    }
}
