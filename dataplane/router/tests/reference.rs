//! Property-style test: `Router::find` agrees with a naive linear implementation of Kong's
//! rules over many random configurations and requests.

use std::collections::{BTreeMap, HashMap};

use fleetgate_config::{GatewayConfig, Protocol, Route, Uuid};
use fleetgate_router::{RequestFacts, Router, Scheme};
use http::{HeaderMap, HeaderName, HeaderValue};

/// xorshift64*: tiny, deterministic, good enough to shuffle test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn some(&mut self, items: &[&str], max: usize) -> Vec<String> {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.pick(items).to_owned()).collect()
    }
}

const HOSTS: &[&str] = &[
    "a.com",
    "b.com",
    "*.a.com",
    "a.*",
    "b.com:8080",
    "x.a.com",
    "*.com",
    "A.Com",
];
const REQ_HOSTS: &[&str] = &[
    "a.com",
    "b.com",
    "x.a.com",
    "y.x.a.com",
    "a.org",
    "b.com:8080",
    "B.COM:80",
    "c.net",
    "",
    "a.com:443",
];
const PATHS: &[&str] = &[
    "/",
    "/a",
    "/ab",
    "/a/b",
    "/abc",
    "/a/b/c",
    "/b",
    r"~/a/\d+",
    "~/a.*",
    "~/(x|ab)",
    r"~/b/\w+$",
    "~/a|/c",
    "~(?i)/AB",
];
const REQ_PATHS: &[&str] = &[
    "/", "/a", "/ab", "/abc", "/a/b", "/a/1", "/a/12/x", "/b/xy", "/b/x/y", "/x", "/c/a", "/AB",
    "/xa/c", "",
];
const METHODS: &[&str] = &["GET", "POST"];
const HEADER_VALUES: &[&str] = &["1", "2", "~*^v\\d$"];
const REQ_HEADER_VALUES: &[&str] = &["1", "2", "V7", "x"];
const SNIS: &[&str] = &["s.com", "t.com"];

fn random_route(rng: &mut Rng, i: usize) -> Route {
    let mut r = Route {
        id: Uuid::from_u128(i as u128 + 1),
        regex_priority: rng.below(4) as i64 - 1,
        ..Route::default()
    };
    if rng.chance(50) {
        r.hosts = Some(rng.some(HOSTS, 2));
    }
    if rng.chance(70) {
        r.paths = Some(rng.some(PATHS, 3));
    }
    if rng.chance(25) {
        r.methods = Some(rng.some(METHODS, 2));
    }
    if rng.chance(20) {
        let mut h = BTreeMap::new();
        for name in ["x-a", "x-b"] {
            if rng.chance(60) {
                h.insert(name.to_owned(), rng.some(HEADER_VALUES, 2));
            }
        }
        r.headers = Some(h);
    }
    if rng.chance(10) {
        r.snis = Some(rng.some(SNIS, 1));
    }
    r.protocols = match rng.below(10) {
        0 => vec![Protocol::Https],
        1 => vec![Protocol::Http],
        2 => vec![Protocol::Grpc, Protocol::Grpcs],
        3 => vec![Protocol::Tcp],
        _ => vec![Protocol::Http, Protocol::Https],
    };
    if r.protocols == [Protocol::Tcp] {
        r.hosts = None;
        r.paths = None;
        r.methods = None;
        r.headers = None;
    }
    r
}

/// A request drawn from the pools above.
struct Req {
    method: &'static str,
    host: &'static str,
    path: &'static str,
    https: bool,
    headers: HeaderMap,
    sni: Option<&'static str>,
}

fn random_request(rng: &mut Rng) -> Req {
    let mut headers = HeaderMap::new();
    for name in ["x-a", "x-b"] {
        if rng.chance(50) {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(rng.pick(REQ_HEADER_VALUES)),
            );
        }
    }
    Req {
        method: rng.pick(METHODS),
        host: rng.pick(REQ_HOSTS),
        path: rng.pick(REQ_PATHS),
        https: rng.chance(40),
        headers,
        sni: if rng.chance(70) {
            Some(rng.pick(SNIS))
        } else {
            None
        },
    }
}

// ---- the naive reference: every route, every rule, straight from the Kong docs ----

fn set<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

fn host_matches(route_host: &str, req_host: &str, https: bool) -> bool {
    let split = |s: &str| -> (String, Option<u16>) {
        match s
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        {
            Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
            None => (s.to_ascii_lowercase(), None),
        }
    };
    let (rname, rport) = split(route_host);
    let (qname, qport) = split(req_host);
    let qport = qport.unwrap_or(if https { 443 } else { 80 });
    if rport.is_some_and(|p| p != qport) {
        return false;
    }
    if let Some(suffix) = rname.strip_prefix('*') {
        qname.ends_with(suffix)
    } else if let Some(prefix) = rname.strip_suffix('*') {
        qname.starts_with(prefix)
    } else {
        qname == rname
    }
}

/// Compiled regexes by source text, so the reference stays simple but not slow.
#[derive(Default)]
struct Regexes(HashMap<String, regex::Regex>);

impl Regexes {
    fn get(&mut self, src: String) -> &regex::Regex {
        self.0
            .entry(src)
            .or_insert_with_key(|s| regex::Regex::new(s).expect("test regex"))
    }
}

fn header_value_matches(res: &mut Regexes, pattern: &str, value: &str) -> bool {
    match pattern.strip_prefix("~*") {
        Some(re) => res.get(format!("(?i){re}")).is_match(value),
        None => pattern.eq_ignore_ascii_case(value),
    }
}

type Key = (u8, bool, u8, bool, i64, usize);

/// `(route index, matched_len)` chosen by scanning every route.
fn reference(res: &mut Regexes, routes: &[Route], q: &Req) -> Option<(usize, Option<usize>)> {
    let mut best: Option<(Key, usize, Option<usize>)> = None;
    for (i, r) in routes.iter().enumerate() {
        let scheme_ok = r.protocols.iter().any(|p| match p {
            Protocol::Http | Protocol::Grpc => !q.https,
            Protocol::Https | Protocol::Grpcs => q.https,
            _ => false,
        });
        if !scheme_ok {
            continue;
        }
        if set(&r.methods) && !r.methods.iter().flatten().any(|m| m == q.method) {
            continue;
        }
        if set(&r.hosts)
            && !r
                .hosts
                .iter()
                .flatten()
                .any(|h| host_matches(h, q.host, q.https))
        {
            continue;
        }
        let headers = r.headers.clone().unwrap_or_default();
        let headers_ok = headers.iter().all(|(name, values)| {
            q.headers.get_all(name.as_str()).iter().any(|v| {
                let v = v.to_str().unwrap_or("");
                values.iter().any(|p| header_value_matches(res, p, v))
            })
        });
        if !headers_ok {
            continue;
        }
        if set(&r.snis) && q.https {
            let ok = q
                .sni
                .is_some_and(|s| r.snis.iter().flatten().any(|x| x == s));
            if !ok {
                continue;
            }
        }
        let categories = [
            set(&r.methods),
            set(&r.hosts),
            !headers.is_empty(),
            set(&r.paths),
            set(&r.snis),
        ]
        .iter()
        .filter(|b| **b)
        .count() as u8;
        let plain = r.hosts.is_some() && r.hosts.iter().flatten().all(|h| !h.contains('*'));
        let base: Key = (categories, plain, headers.len() as u8, false, 0, 0);
        // Candidate (key, matched_len) per path group.
        let mut candidates: Vec<(Key, Option<usize>)> = Vec::new();
        let paths = r.paths.clone().unwrap_or_default();
        if paths.is_empty() {
            candidates.push((base, None));
        }
        let regex_len = paths
            .iter()
            .filter_map(|p| p.strip_prefix('~'))
            .find_map(|re| res.get(format!("^{re}")).find(q.path).map(|m| m.len()));
        if let Some(len) = regex_len {
            candidates.push((
                (base.0, base.1, base.2, true, r.regex_priority, 0),
                Some(len),
            ));
        }
        for p in paths.iter().filter(|p| !p.starts_with('~')) {
            if q.path.starts_with(p.as_str()) {
                candidates.push(((base.0, base.1, base.2, false, 0, p.len()), Some(p.len())));
            }
        }
        for (key, len) in candidates {
            let better = match &best {
                None => true,
                // Equal keys keep the earlier route (routes are visited in order).
                Some((bk, _, _)) => key > *bk,
            };
            if better {
                best = Some((key, i, len));
            }
        }
    }
    best.map(|(_, i, len)| (i, len))
}

#[test]
fn find_agrees_with_linear_reference() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut matched = 0;
    let mut checks = 0;
    let mut res = Regexes::default();
    for round in 0..600 {
        let n = 1 + rng.below(14);
        let routes: Vec<Route> = (0..n).map(|i| random_route(&mut rng, i)).collect();
        let config = GatewayConfig {
            routes: routes.clone(),
            ..GatewayConfig::default()
        };
        let router = Router::build(&config).unwrap_or_else(|e| panic!("round {round}: {e}"));
        for _ in 0..60 {
            let q = random_request(&mut rng);
            let facts = RequestFacts {
                method: q.method,
                host: q.host,
                path: q.path,
                scheme: if q.https { Scheme::Https } else { Scheme::Http },
                headers: &q.headers,
                sni: q.sni,
            };
            let got = router.find(&facts).map(|m| (m.route_index, m.matched_len));
            let want = reference(&mut res, &routes, &q);
            assert_eq!(
                got, want,
                "round {round}: {} {} {} https={} sni={:?} headers={:?}\nroutes: {routes:#?}",
                q.method, q.host, q.path, q.https, q.sni, q.headers
            );
            matched += usize::from(got.is_some());
            checks += 1;
        }
    }
    // The pools are small on purpose: most requests should hit something.
    assert!(
        matched * 3 > checks,
        "only {matched} of {checks} requests matched"
    );
}
