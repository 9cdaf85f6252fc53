//! Table-driven tests of Kong's matching rules.

mod support;

use fleetgate_config::{GatewayConfig, Protocol, Uuid};
use fleetgate_router::{Router, RouterError};
use support::{config, find, get, run, Case, Q, R};

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
