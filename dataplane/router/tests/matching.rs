//! Table-driven tests of Kong's matching rules and priorities.

use std::collections::BTreeMap;

use fleetgate_config::{EntityRef, GatewayConfig, Protocol, Route, Uuid};
use fleetgate_router::{RequestFacts, Router, RouterError, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue};

/// A route from a compact description; ids are assigned by `config`.
#[derive(Default, Clone)]
struct R {
    hosts: &'static [&'static str],
    paths: &'static [&'static str],
    methods: &'static [&'static str],
    headers: &'static [(&'static str, &'static [&'static str])],
    snis: &'static [&'static str],
    protocols: &'static [Protocol],
    regex_priority: i64,
}

fn opt(v: &[&str]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.iter().map(|s| s.to_string()).collect())
}

fn to_route(i: usize, r: &R) -> Route {
    Route {
        id: Uuid::from_u128(i as u128 + 1),
        hosts: opt(r.hosts),
        paths: opt(r.paths),
        methods: opt(r.methods),
        snis: opt(r.snis),
        headers: (!r.headers.is_empty()).then(|| {
            r.headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<BTreeMap<_, _>>()
        }),
        protocols: if r.protocols.is_empty() {
            vec![Protocol::Http, Protocol::Https]
        } else {
            r.protocols.to_vec()
        },
        regex_priority: r.regex_priority,
        service: Some(EntityRef::new(Uuid::from_u128(1000 + i as u128))),
        ..Route::default()
    }
}

fn config(routes: &[R]) -> GatewayConfig {
    GatewayConfig {
        routes: routes
            .iter()
            .enumerate()
            .map(|(i, r)| to_route(i, r))
            .collect(),
        ..GatewayConfig::default()
    }
}

/// A request from a compact description.
#[derive(Clone, Copy)]
struct Q {
    method: &'static str,
    host: &'static str,
    path: &'static str,
    https: bool,
    headers: &'static [(&'static str, &'static str)],
    sni: Option<&'static str>,
}

const fn get(host: &'static str, path: &'static str) -> Q {
    Q {
        method: "GET",
        host,
        path,
        https: false,
        headers: &[],
        sni: None,
    }
}

fn headers(q: &Q) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in q.headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("test header name"),
            HeaderValue::from_static(v),
        );
    }
    h
}

/// `(route index, matched_len)` of a match, if any.
type Hit = Option<(usize, Option<usize>)>;

/// The match of `q`, as a [`Hit`].
fn find(router: &Router, q: &Q) -> Hit {
    let h = headers(q);
    let facts = RequestFacts {
        method: q.method,
        host: q.host,
        path: q.path,
        scheme: if q.https { Scheme::Https } else { Scheme::Http },
        headers: &h,
        sni: q.sni,
    };
    router.find(&facts).map(|m| {
        assert_eq!(m.route.id, m.route_id);
        assert_eq!(
            m.service_id,
            Some(Uuid::from_u128(1000 + m.route_index as u128))
        );
        (m.route_index, m.matched_len)
    })
}

struct Case {
    name: &'static str,
    routes: Vec<R>,
    /// Request and expected `(route index, matched_len)`.
    expect: Vec<(Q, Hit)>,
}

fn run(cases: Vec<Case>) -> usize {
    let mut checks = 0;
    for case in cases {
        let router = Router::build(&config(&case.routes))
            .unwrap_or_else(|e| panic!("{}: build: {e}", case.name));
        for (q, want) in &case.expect {
            assert_eq!(
                find(&router, q),
                *want,
                "case '{}': {} {} {}",
                case.name,
                q.method,
                q.host,
                q.path
            );
            checks += 1;
        }
    }
    checks
}

const GET_ONLY: &[&str] = &["GET"];

#[test]
fn kong_matching_categories() {
    let cases = vec![
        Case {
            name: "hosts (Kong docs: example.com, foo-service.com)",
            routes: vec![R {
                hosts: &["example.com", "foo-service.com"],
                ..R::default()
            }],
            expect: vec![
                (get("example.com", "/"), Some((0, None))),
                (get("Foo-Service.COM:8000", "/x"), Some((0, None))),
                (get("other.com", "/"), None),
                (get("a.example.com", "/"), None),
            ],
        },
        Case {
            name: "wildcard hosts",
            routes: vec![
                R {
                    hosts: &["*.example.com"],
                    ..R::default()
                },
                R {
                    hosts: &["example.*"],
                    ..R::default()
                },
            ],
            expect: vec![
                (get("a.example.com", "/"), Some((0, None))),
                (get("a.b.example.com", "/"), Some((0, None))),
                (get("example.com", "/"), Some((1, None))),
                (get("example.org:8080", "/"), Some((1, None))),
                (get("myexample.com", "/"), None),
            ],
        },
        Case {
            name: "host with port",
            routes: vec![R {
                hosts: &["example.com:8080", "*.x.com:81"],
                ..R::default()
            }],
            expect: vec![
                (get("example.com:8080", "/"), Some((0, None))),
                (get("example.com", "/"), None),
                (get("example.com:80", "/"), None),
                (get("a.x.com:81", "/"), Some((0, None))),
                (get("a.x.com", "/"), None),
            ],
        },
        Case {
            name: "methods (case-sensitive)",
            routes: vec![R {
                methods: &["GET", "HEAD"],
                ..R::default()
            }],
            expect: vec![
                (get("h", "/"), Some((0, None))),
                (
                    Q {
                        method: "HEAD",
                        ..get("h", "/")
                    },
                    Some((0, None)),
                ),
                (
                    Q {
                        method: "POST",
                        ..get("h", "/")
                    },
                    None,
                ),
                (
                    Q {
                        method: "get",
                        ..get("h", "/")
                    },
                    None,
                ),
            ],
        },
        Case {
            name: "headers (Kong docs: version v1/v2)",
            routes: vec![R {
                headers: &[("version", &["v1", "v2"])],
                ..R::default()
            }],
            expect: vec![
                (
                    Q {
                        headers: &[("version", "v1")],
                        ..get("h", "/")
                    },
                    Some((0, None)),
                ),
                (
                    Q {
                        headers: &[("Version", "V2")],
                        ..get("h", "/")
                    },
                    Some((0, None)),
                ),
                (
                    Q {
                        headers: &[("version", "v3"), ("version", "v2")],
                        ..get("h", "/")
                    },
                    Some((0, None)),
                ),
                (
                    Q {
                        headers: &[("version", "v3")],
                        ..get("h", "/")
                    },
                    None,
                ),
                (get("h", "/"), None),
            ],
        },
        Case {
            name: "header regex values (~*)",
            routes: vec![R {
                headers: &[("x-user", &[r"~*^admin-\d+$"])],
                ..R::default()
            }],
            expect: vec![
                (
                    Q {
                        headers: &[("x-user", "Admin-12")],
                        ..get("h", "/")
                    },
                    Some((0, None)),
                ),
                (
                    Q {
                        headers: &[("x-user", "admin-x")],
                        ..get("h", "/")
                    },
                    None,
                ),
            ],
        },
        Case {
            name: "prefix paths (Kong docs: /service, /hello/world)",
            routes: vec![R {
                paths: &["/service", "/hello/world"],
                ..R::default()
            }],
            expect: vec![
                (get("h", "/service"), Some((0, Some(8)))),
                (get("h", "/service/resource"), Some((0, Some(8)))),
                (get("h", "/hello/world/resource"), Some((0, Some(12)))),
                // Plain byte prefix, not segment-aware.
                (get("h", "/services"), Some((0, Some(8)))),
                (get("h", "/hello"), None),
                (get("h", "/"), None),
            ],
        },
        Case {
            name: "regex paths are anchored at the start",
            routes: vec![R {
                paths: &[r"~/users/\d+/profile"],
                ..R::default()
            }],
            expect: vec![
                (get("h", "/users/123/profile"), Some((0, Some(18)))),
                (get("h", "/users/123/profile/x"), Some((0, Some(18)))),
                (get("h", "/api/users/123/profile"), None),
                (get("h", "/users/abc/profile"), None),
            ],
        },
        Case {
            name: "snis only apply to https",
            routes: vec![R {
                snis: &["a.com"],
                ..R::default()
            }],
            expect: vec![
                (
                    Q {
                        https: true,
                        sni: Some("a.com"),
                        ..get("x", "/")
                    },
                    Some((0, None)),
                ),
                (
                    Q {
                        https: true,
                        sni: Some("A.com."),
                        ..get("x", "/")
                    },
                    Some((0, None)),
                ),
                (
                    Q {
                        https: true,
                        sni: Some("b.com"),
                        ..get("x", "/")
                    },
                    None,
                ),
                (
                    Q {
                        https: true,
                        ..get("x", "/")
                    },
                    None,
                ),
                (get("x", "/"), Some((0, None))),
            ],
        },
        Case {
            name: "protocols",
            routes: vec![
                R {
                    paths: &["/s"],
                    protocols: &[Protocol::Https],
                    ..R::default()
                },
                R {
                    paths: &["/g"],
                    protocols: &[Protocol::Grpc],
                    ..R::default()
                },
                R {
                    paths: &["/gs"],
                    protocols: &[Protocol::Grpcs],
                    ..R::default()
                },
                R {
                    snis: &["t.com"],
                    protocols: &[Protocol::Tls],
                    ..R::default()
                },
            ],
            expect: vec![
                (get("h", "/s"), None),
                (
                    Q {
                        https: true,
                        ..get("h", "/s")
                    },
                    Some((0, Some(2))),
                ),
                (get("h", "/g"), Some((1, Some(2)))),
                (
                    Q {
                        https: true,
                        ..get("h", "/g")
                    },
                    None,
                ),
                (
                    Q {
                        https: true,
                        ..get("h", "/gs")
                    },
                    Some((2, Some(3))),
                ),
                (
                    Q {
                        https: true,
                        sni: Some("t.com"),
                        ..get("h", "/")
                    },
                    None,
                ),
            ],
        },
    ];
    assert!(run(cases) > 40);
}

#[test]
fn kong_priorities() {
    let cases = vec![
        Case {
            // Kong proxy docs: among regex paths, higher regex_priority first; regex paths
            // before prefix paths (3.x); prefix paths longest first.
            name: "regex_priority (Kong docs example)",
            routes: vec![
                R {
                    paths: &[r"~/status/\d+"],
                    regex_priority: 6,
                    ..R::default()
                },
                R {
                    paths: &[r"~/version/\d+/status/\d+"],
                    regex_priority: 10,
                    ..R::default()
                },
                R {
                    paths: &["/version"],
                    ..R::default()
                },
                R {
                    paths: &["~/version/any/"],
                    ..R::default()
                },
            ],
            expect: vec![
                (get("h", "/version/1/status/2"), Some((1, Some(19)))),
                (get("h", "/status/5"), Some((0, Some(9)))),
                (get("h", "/version/any/x"), Some((3, Some(13)))),
                (get("h", "/version"), Some((2, Some(8)))),
                (get("h", "/version/2"), Some((2, Some(8)))),
            ],
        },
        Case {
            name: "regex beats a longer prefix; regex_priority ties go to the first route",
            routes: vec![
                R {
                    paths: &["/version/1/long"],
                    ..R::default()
                },
                R {
                    paths: &[r"~/version/\d"],
                    ..R::default()
                },
                R {
                    paths: &[r"~/version/1"],
                    ..R::default()
                },
                R {
                    paths: &[r"~/v"],
                    regex_priority: -1,
                    ..R::default()
                },
            ],
            expect: vec![
                (get("h", "/version/1/long"), Some((1, Some(10)))),
                (get("h", "/vx"), Some((3, Some(2)))),
            ],
        },
        Case {
            name: "longest prefix wins",
            routes: vec![
                R {
                    paths: &["/"],
                    ..R::default()
                },
                R {
                    paths: &["/a/b"],
                    ..R::default()
                },
                R {
                    paths: &["/a"],
                    ..R::default()
                },
            ],
            expect: vec![
                (get("h", "/a/b/c"), Some((1, Some(4)))),
                (get("h", "/a/c"), Some((2, Some(2)))),
                (get("h", "/ab"), Some((2, Some(2)))),
                (get("h", "/x"), Some((0, Some(1)))),
            ],
        },
        Case {
            name: "a route's paths compete by group (Kong splits routes by path length)",
            routes: vec![
                R {
                    paths: &["/a", "/abcd"],
                    ..R::default()
                },
                R {
                    paths: &["/abc"],
                    ..R::default()
                },
            ],
            expect: vec![
                (get("h", "/abcd/x"), Some((0, Some(5)))),
                (get("h", "/abcx"), Some((1, Some(4)))),
                (get("h", "/ax"), Some((0, Some(2)))),
            ],
        },
        Case {
            name: "more categories win (Kong docs: hosts vs hosts+methods)",
            routes: vec![
                R {
                    hosts: &["example.com"],
                    ..R::default()
                },
                R {
                    hosts: &["example.com"],
                    methods: &["POST"],
                    ..R::default()
                },
                R {
                    paths: &["/very/long/prefix/path"],
                    ..R::default()
                },
            ],
            expect: vec![
                (
                    Q {
                        method: "POST",
                        ..get("example.com", "/")
                    },
                    Some((1, None)),
                ),
                (get("example.com", "/"), Some((0, None))),
                // One category each: hosts (plain) beats a long prefix path.
                (
                    get("example.com", "/very/long/prefix/path"),
                    Some((0, None)),
                ),
                (
                    get("other.com", "/very/long/prefix/path"),
                    Some((2, Some(22))),
                ),
            ],
        },
        Case {
            name: "plain hosts beat wildcard hosts",
            routes: vec![
                R {
                    hosts: &["*.example.com"],
                    paths: &["/api/long"],
                    ..R::default()
                },
                R {
                    hosts: &["a.example.com"],
                    paths: &["/"],
                    ..R::default()
                },
                R {
                    hosts: &["a.example.com", "*.x.com"],
                    paths: &["/"],
                    ..R::default()
                },
            ],
            expect: vec![
                (get("a.example.com", "/api/long"), Some((1, Some(1)))),
                (get("b.example.com", "/api/long"), Some((0, Some(9)))),
            ],
        },
        Case {
            name: "more headers win",
            routes: vec![
                R {
                    headers: &[("x-a", &["1"])],
                    ..R::default()
                },
                R {
                    headers: &[("x-a", &["1"]), ("x-b", &["2"])],
                    ..R::default()
                },
            ],
            expect: vec![
                (
                    Q {
                        headers: &[("x-a", "1"), ("x-b", "2")],
                        ..get("h", "/")
                    },
                    Some((1, None)),
                ),
                (
                    Q {
                        headers: &[("x-a", "1")],
                        ..get("h", "/")
                    },
                    Some((0, None)),
                ),
            ],
        },
        Case {
            name: "method + path beats host alone; GET-only fallback",
            routes: vec![
                R {
                    hosts: &["h.com"],
                    ..R::default()
                },
                R {
                    methods: GET_ONLY,
                    paths: &["/x"],
                    ..R::default()
                },
            ],
            expect: vec![
                (get("h.com", "/x"), Some((1, Some(2)))),
                (
                    Q {
                        method: "PUT",
                        ..get("h.com", "/x")
                    },
                    Some((0, None)),
                ),
            ],
        },
    ];
    assert!(run(cases) > 20);
}

#[test]
fn empty_and_stream_only_configs() {
    let router = Router::build(&GatewayConfig::default()).expect("empty config");
    assert!(router.is_empty());
    assert_eq!(find(&router, &get("h", "/")), None);
    let router = Router::build(&config(&[
        R {
            snis: &["t.com"],
            protocols: &[Protocol::Tcp],
            ..R::default()
        },
        R {
            paths: &["/"],
            ..R::default()
        },
    ]))
    .expect("build");
    assert_eq!(router.len(), 1);
    assert!(!router.is_empty());
    // Regexes compile lazily; precompiling must not change results.
    let router = Router::build(&config(&[R {
        paths: &[r"~/n/\d+"],
        ..R::default()
    }]))
    .expect("build");
    router.precompile_regexes();
    assert_eq!(find(&router, &get("h", "/n/12/x")), Some((0, Some(5))));
    assert_eq!(router.route(0).map(|r| r.id), Some(Uuid::from_u128(1)));
}

#[test]
fn bad_regex_and_header_are_reported() {
    let err = Router::build(&config(&[
        R {
            paths: &["/ok"],
            ..R::default()
        },
        R {
            paths: &["~/(unclosed"],
            ..R::default()
        },
    ]))
    .err();
    assert!(
        matches!(err, Some(RouterError::BadPath { index: 1, .. })),
        "{err:?}"
    );
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.starts_with("routes[1].paths: "), "{msg}");

    let err = Router::build(&config(&[R {
        headers: &[("x", &["~*(bad"])],
        ..R::default()
    }]))
    .err();
    assert!(
        matches!(err, Some(RouterError::BadHeader { index: 0, .. })),
        "{err:?}"
    );
}
