//! Table-driven tests of Kong's route priorities (traditional_compatible).

mod support;

use support::{get, run, Case, Q, R};

const GET_ONLY: &[&str] = &["GET"];

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
