//! Compiling routes into the lookup structure, and the lookup itself.
//!
//! Every route becomes one or more *entries* (Kong's split by path group), each with a
//! precomputed priority key. Entries are sorted once; an entry's position is its *rank*,
//! so `find` only compares integers. Entries are filed by host (exact map, wildcard maps,
//! no-host bucket) and, inside a host bucket, by path prefix (see [`PathIndex`]): a prefix
//! entry under its path, a regex entry under the literal prefixes of its regex, an entry
//! without paths under `""`. A lookup visits only the buckets of the request host and
//! only the keys that are prefixes of the request path, scanning each key's items in rank
//! order and stopping as soon as nothing there can beat the best match found so far.

use std::cmp::Reverse;
use std::collections::HashMap;

use foldhash::fast::RandomState;

use fleetgate_config::{GatewayConfig, Route};

use crate::conditions::{method_bit, parse_path_regex, scheme_bit, Conditions, PathRule, Probe};
use crate::host::{split_host_port, HostPattern, LowerHost, RouteHost};
use crate::host_table::HostTable;
use crate::path_index::{flags, Item, PathIndex, PathIndexBuilder, PathStore};
use crate::{RequestFacts, RouteMatch, RouteRuntime, RouterError, Scheme};

/// Kong caps the header count used for sorting at 255.
const MAX_HEADER_COUNT: usize = 255;

/// Kong's sort key of an entry; derived `Ord` compares fields in declaration order, and
/// higher sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct PriorityKey {
    /// Number of categories set (methods, hosts, headers, paths, snis).
    categories: u8,
    /// `hosts` is set and holds no wildcard.
    plain_hosts: bool,
    /// Number of header conditions.
    headers: u8,
    /// The entry holds regex paths.
    regex: bool,
    /// `regex_priority`, for regex entries only.
    regex_priority: i64,
    /// Prefix length, for prefix entries only.
    prefix_len: usize,
}

/// One entry: a route restricted to one group of its paths.
#[derive(Debug)]
struct Entry {
    rule: PathRule,
}

/// An entry before ranking: its key, route, rule and the path-index keys it is filed under.
struct Pending {
    key: PriorityKey,
    route: u32,
    rule: PathRule,
    path_keys: Vec<Vec<u8>>,
}

/// The compiled router. Immutable after [`Router::build`]; `Send + Sync`.
#[derive(Debug)]
pub struct Router {
    runtimes: Vec<RouteRuntime>,
    /// Conditions per route index; `None` for routes this router ignores (stream routes).
    conditions: Vec<Option<Conditions>>,
    /// Entries in rank order (index == rank).
    entries: Vec<Entry>,
    /// Keys, bytes and items of every path index below.
    paths: PathStore,
    exact: HostTable,
    /// `*.example.com` routes keyed by `.example.com`.
    suffix: HostTable,
    /// `example.*` routes keyed by `example.`.
    prefix: HostTable,
    any_host: PathIndex,
    /// Best rank in the wildcard maps: their lookups are skipped when a better match is
    /// already known.
    wildcard_min_rank: u32,
    /// Bit `n` set: some key of `suffix` holds `n` dots (bit 63: 63 or more).
    suffix_dots: u64,
    /// The same for `prefix`.
    prefix_dots: u64,
    http_routes: usize,
    /// Some route matches on request headers.
    uses_headers: bool,
}

/// The [`Router::suffix_dots`] mask of a table of wildcard keys.
fn dot_counts(table: &HostTable, paths: &PathStore) -> u64 {
    table.buckets().fold(0, |mask, b| {
        let dots = b.label(paths).iter().filter(|&&c| c == b'.').count();
        mask | 1 << dots.min(63)
    })
}

/// Whether a dot-count mask may hold keys with `n` dots.
#[inline]
fn has_dot_count(mask: u64, n: usize) -> bool {
    mask & (1 << n.min(63)) != 0
}

fn non_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

/// The entries of one route, Kong's `split_routes_and_services_by_path`: all regex paths
/// form one entry, prefix paths one entry per distinct length, no paths one entry.
fn split_route(index: usize, route: &Route) -> Result<Vec<Pending>, RouterError> {
    let hosts = route.hosts.as_deref().unwrap_or_default();
    let headers = route.headers.as_ref().map_or(0, |h| h.len());
    let categories = [
        non_empty(&route.methods),
        !hosts.is_empty(),
        headers > 0,
        non_empty(&route.paths),
        non_empty(&route.snis),
    ]
    .into_iter()
    .filter(|&set| set)
    .count() as u8;
    // Kong tests `type(hosts) == "table"`: a present but empty list still counts as plain.
    let plain_hosts = route.hosts.is_some() && hosts.iter().all(|h| !h.contains('*'));
    let base = PriorityKey {
        categories,
        plain_hosts,
        headers: headers.min(MAX_HEADER_COUNT) as u8,
        regex: false,
        regex_priority: 0,
        prefix_len: 0,
    };
    let route_no = index as u32;
    let paths = route.paths.as_deref().unwrap_or_default();
    if paths.is_empty() {
        return Ok(vec![Pending {
            key: base,
            route: route_no,
            rule: PathRule::Any,
            path_keys: vec![Vec::new()],
        }]);
    }

    let mut regexes = Vec::new();
    let mut regex_keys: Vec<Vec<u8>> = Vec::new();
    // Prefix groups by length, in first-seen order (the order does not affect results).
    let mut by_len: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
    for path in paths {
        if let Some(pattern) = path.strip_prefix('~') {
            let (regex, keys) = parse_path_regex(index, pattern)?;
            regexes.push(regex);
            for k in keys {
                if !regex_keys.contains(&k) {
                    regex_keys.push(k);
                }
            }
        } else {
            let key = path.as_bytes().to_vec();
            match by_len.iter_mut().find(|(len, _)| *len == path.len()) {
                Some((_, keys)) => keys.push(key),
                None => by_len.push((path.len(), vec![key])),
            }
        }
    }
    let mut out = Vec::with_capacity(by_len.len() + 1);
    if !regexes.is_empty() {
        out.push(Pending {
            key: PriorityKey {
                regex: true,
                regex_priority: route.regex_priority,
                ..base
            },
            route: route_no,
            rule: PathRule::Regex(regexes.into_boxed_slice()),
            path_keys: regex_keys,
        });
    }
    for (len, keys) in by_len {
        out.push(Pending {
            key: PriorityKey {
                prefix_len: len,
                ..base
            },
            route: route_no,
            rule: PathRule::Prefix(len),
            path_keys: keys,
        });
    }
    Ok(out)
}

/// Bucket builders by host.
#[derive(Default)]
struct Buckets {
    exact: HashMap<Vec<u8>, PathIndexBuilder, RandomState>,
    suffix: HashMap<Vec<u8>, PathIndexBuilder, RandomState>,
    prefix: HashMap<Vec<u8>, PathIndexBuilder, RandomState>,
    any_host: PathIndexBuilder,
}

impl Buckets {
    fn bucket(&mut self, host: &HostPattern) -> &mut PathIndexBuilder {
        let (map, name) = match host {
            HostPattern::Exact(n) => (&mut self.exact, n),
            HostPattern::Suffix(n) => (&mut self.suffix, n),
            HostPattern::Prefix(n) => (&mut self.prefix, n),
        };
        map.entry(name.as_bytes().to_vec()).or_default()
    }
}

impl Router {
    /// Whether any route matches on request headers; when none does, [`Router::find`]
    /// never reads [`RequestFacts::headers`] (the proxy may pass an empty map).
    pub fn uses_headers(&self) -> bool {
        self.uses_headers
    }

    /// Compiles the routes of `config`. Fails on a regex path or header condition that
    /// does not compile, naming the route by its index in `config.routes`.
    pub fn build(config: &GatewayConfig) -> Result<Router, RouterError> {
        let routes = &config.routes;
        let mut runtimes = Vec::with_capacity(routes.len());
        let mut conditions = Vec::with_capacity(routes.len());
        let mut pending = Vec::with_capacity(routes.len());
        let mut http_routes = 0;
        for (index, route) in routes.iter().enumerate() {
            runtimes.push(RouteRuntime::from_route(route));
            let cond = Conditions::compile(index, route)?;
            if cond.schemes == 0 {
                conditions.push(None);
                continue;
            }
            conditions.push(Some(cond));
            http_routes += 1;
            pending.extend(split_route(index, route)?);
        }
        // Stable order: best key first, then the route listed first.
        pending.sort_by_key(|p| (Reverse(p.key), p.route));

        let mut buckets = Buckets::default();
        let mut entries = Vec::with_capacity(pending.len());
        let mut hosts_of: HashMap<u32, Vec<RouteHost>> = HashMap::new();
        for (rank, p) in pending.into_iter().enumerate() {
            let rank = rank as u32;
            let hosts = hosts_of.entry(p.route).or_insert_with(|| {
                routes[p.route as usize]
                    .hosts
                    .iter()
                    .flatten()
                    .map(|h| RouteHost::parse(h))
                    .collect()
            });
            // Every pending entry's route has conditions; a missing one never matches.
            let (summary_flags, methods) = conditions
                .get(p.route as usize)
                .and_then(Option::as_ref)
                .map_or((0, 0), |c| {
                    let s = c.summary();
                    (s.flags, s.methods)
                });
            let rule_flag = match p.rule {
                PathRule::Any => 0,
                PathRule::Prefix(_) => flags::PREFIX,
                PathRule::Regex(_) => flags::REGEX,
            };
            let item = |port: Option<u16>| Item {
                rank,
                route: p.route,
                port: port.unwrap_or(0),
                methods,
                flags: summary_flags | rule_flag | if port.is_some() { flags::HAS_PORT } else { 0 },
            };
            if hosts.is_empty() {
                for key in &p.path_keys {
                    buckets.any_host.insert(key, item(None));
                }
            }
            for host in hosts.iter() {
                let bucket = buckets.bucket(&host.pattern);
                for key in &p.path_keys {
                    bucket.insert(key, item(host.port));
                }
            }
            entries.push(Entry { rule: p.rule });
        }
        let mut paths = PathStore::default();
        let exact = HostTable::build(buckets.exact, &mut paths);
        let suffix = HostTable::build(buckets.suffix, &mut paths);
        let prefix = HostTable::build(buckets.prefix, &mut paths);
        let any_host = buckets.any_host.finish(b"", &mut paths);
        paths.shrink_to_fit();
        let suffix_dots = dot_counts(&suffix, &paths);
        let prefix_dots = dot_counts(&prefix, &paths);
        let wildcard_min_rank = suffix
            .buckets()
            .chain(prefix.buckets())
            .map(PathIndex::min_rank)
            .min()
            .unwrap_or(u32::MAX);
        let uses_headers = conditions.iter().flatten().any(Conditions::uses_headers);
        Ok(Router {
            uses_headers,
            runtimes,
            conditions,
            entries,
            paths,
            exact,
            suffix,
            prefix,
            wildcard_min_rank,
            suffix_dots,
            prefix_dots,
            any_host,
            http_routes,
        })
    }

    /// Number of routes the router matches on (HTTP-family routes).
    pub fn len(&self) -> usize {
        self.http_routes
    }

    /// Whether no route can match.
    pub fn is_empty(&self) -> bool {
        self.http_routes == 0
    }

    /// Compiles every regex path now. Regexes otherwise compile on first use (~100 µs
    /// each), which keeps [`Router::build`] fast; call this on a background thread after
    /// building, before the router takes traffic, to keep that cost off requests.
    pub fn precompile_regexes(&self) {
        for entry in &self.entries {
            if let PathRule::Regex(list) = &entry.rule {
                for r in list.iter() {
                    r.precompile();
                }
            }
        }
    }

    /// The proxy settings of `config.routes[index]`.
    pub fn route(&self, index: usize) -> Option<&RouteRuntime> {
        self.runtimes.get(index)
    }

    /// The route for a request, by Kong's priority rules (see the crate docs).
    pub fn find<'r>(&'r self, req: &RequestFacts<'_>) -> Option<RouteMatch<'r>> {
        let probe = Probe {
            scheme: scheme_bit(req.scheme),
            method: req.method,
            headers: req.headers,
            sni: req.sni,
        };
        let (name, port) = split_host_port(req.host);
        // A route host with a port matches the Host header's port, or the scheme's
        // default port when the header names none.
        let port = port.unwrap_or(match req.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        });
        let host = LowerHost::new(name);
        let host = host.as_bytes();
        let req = Req {
            probe,
            method: method_bit(req.method),
            port,
            path: req.path,
        };
        let mut best = Best {
            rank: u32::MAX,
            route: u32::MAX,
            len: None,
        };
        // Plain hosts outrank wildcards at equal category counts, so scanning the exact
        // bucket first tends to prune the rest early.
        if let Some(idx) = self.exact.get(&self.paths, host) {
            self.scan(idx, &req, &mut best);
        }
        if self.wildcard_min_rank < best.rank {
            let dots = host.iter().filter(|&&c| c == b'.').count();
            let mut seen = 0;
            for (i, _) in host.iter().enumerate().filter(|(_, &c)| c == b'.') {
                seen += 1;
                // Each probe is a likely cache miss: skip label counts no pattern has.
                if has_dot_count(self.suffix_dots, dots - seen + 1) {
                    if let Some(idx) = self.suffix.get(&self.paths, &host[i..]) {
                        self.scan(idx, &req, &mut best);
                    }
                }
                if has_dot_count(self.prefix_dots, seen) {
                    if let Some(idx) = self.prefix.get(&self.paths, &host[..=i]) {
                        self.scan(idx, &req, &mut best);
                    }
                }
            }
        }
        self.scan(&self.any_host, &req, &mut best);

        let route_index = best.route as usize;
        let route = self.runtimes.get(route_index)?;
        Some(RouteMatch {
            route_index,
            route_id: route.id,
            service_id: route.service_id,
            matched_len: best.len,
            route,
        })
    }

    /// Scans one host bucket, improving `best`.
    #[inline]
    fn scan(&self, idx: &PathIndex, req: &Req<'_>, best: &mut Best) {
        if idx.min_rank() >= best.rank {
            return;
        }
        let scheme = req.probe.scheme;
        idx.for_each_prefix(&self.paths, req.path.as_bytes(), |key_len, first, more| {
            // The first item sits in the key; `more` is read only when it does not match.
            for item in std::iter::once(first).chain(more) {
                // Items are in rank order: nothing further in this list can win.
                if item.rank >= best.rank {
                    break;
                }
                // Cheap inline checks first; the route's full conditions and the entry
                // (regexes) only when needed.
                if item.flags & scheme == 0
                    || item.port().is_some_and(|p| p != req.port)
                    || (item.flags & flags::METHODS != 0 && item.methods & req.method == 0)
                {
                    continue;
                }
                if item.flags & flags::SLOW != 0 {
                    let matched = self
                        .conditions
                        .get(item.route as usize)
                        .and_then(Option::as_ref)
                        .is_some_and(|c| c.matches(&req.probe));
                    if !matched {
                        continue;
                    }
                }
                let len = if item.flags & flags::PREFIX != 0 {
                    // A prefix entry is filed under its paths, all of the entry's length.
                    Some(Some(key_len))
                } else if item.flags & flags::REGEX != 0 {
                    self.entries
                        .get(item.rank as usize)
                        .and_then(|e| e.rule.check(req.path))
                } else {
                    Some(None)
                };
                if let Some(len) = len {
                    *best = Best {
                        rank: item.rank,
                        route: item.route,
                        len,
                    };
                    break;
                }
            }
            true
        });
    }
}

/// The request as a scan sees it.
struct Req<'a> {
    probe: Probe<'a>,
    /// [`method_bit`] of the request method.
    method: u16,
    /// Effective port.
    port: u16,
    path: &'a str,
}

/// Best match so far: entry rank and matched length.
struct Best {
    rank: u32,
    route: u32,
    len: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::SCHEME_HTTPS;

    #[test]
    fn router_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Router>();
    }

    #[test]
    fn https_constant_is_distinct() {
        assert_ne!(scheme_bit(Scheme::Http), SCHEME_HTTPS);
    }
}
