//! `cors` (Kong priority 2000): answers CORS preflights and adds CORS headers to responses,
//! following Kong's `kong/plugins/cors/handler.lua`.

use std::sync::Arc;

use bytes::Bytes;
use fleetgate_config::plugins::CorsConfig;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use regex::Regex;

use crate::response::empty;
use crate::AccessRequest;

const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");
const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");

/// How allowed origins are decided (Kong's `configure_origin`).
#[derive(Debug)]
enum Origins {
    /// No origins, or exactly `["*"]`: `Access-Control-Allow-Origin: *`.
    Any,
    /// Exactly one literal origin: sent as-is whatever the request's origin.
    Single(HeaderValue),
    /// Matched against the request's origin.
    List {
        /// An entry is `*`: Kong then allows any origin (when the request has one).
        has_star: bool,
        entries: Vec<OriginEntry>,
    },
}

#[derive(Debug)]
enum OriginEntry {
    /// A literal origin, normalized (`scheme://host[:port]`, default port dropped).
    Exact(String),
    /// A regex, anchored like Kong's; matched against the host when it has no `:`.
    Regex { re: Regex, by_host: bool },
}

/// A compiled cors instance.
#[derive(Debug)]
pub(crate) struct CorsPlugin {
    origins: Origins,
    credentials: bool,
    exposed_headers: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    methods: HeaderValue,
    max_age: Option<HeaderValue>,
    preflight_continue: bool,
    private_network: bool,
}

/// What the response phase needs: the instance and the request's `Origin`.
#[derive(Debug, Clone)]
pub(crate) struct CorsState {
    plugin: Arc<CorsPlugin>,
    origin: Option<HeaderValue>,
}

/// The access phase's decision.
#[derive(Debug)]
pub(crate) enum CorsAccess {
    /// A preflight answered here.
    Preflight(Response<Bytes>),
    /// Go on; `None` means the response phase must not add CORS headers.
    Continue(Option<CorsState>),
}

/// Kong treats an origin as a regex when it has a character outside this set.
fn is_literal(origin: &str) -> bool {
    !origin.is_empty()
        && origin
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:/-".contains(&b))
}

fn joined(values: &[String]) -> Result<Option<HeaderValue>, String> {
    if values.is_empty() {
        return Ok(None);
    }
    let value = values.join(",");
    HeaderValue::from_str(&value)
        .map(Some)
        .map_err(|_| format!("{value:?} is not a valid header value"))
}

impl CorsPlugin {
    /// Compiles a config; fails on an invalid origin regex or header value.
    pub fn new(conf: CorsConfig) -> Result<Self, String> {
        let origins = conf.origins.unwrap_or_default();
        let origins = if origins.is_empty() || (origins.len() == 1 && origins[0] == "*") {
            Origins::Any
        } else if origins.len() == 1 && is_literal(&origins[0]) {
            let value = HeaderValue::from_str(&origins[0])
                .map_err(|_| format!("origin {:?} is not a valid header value", origins[0]))?;
            Origins::Single(value)
        } else {
            let mut entries = Vec::with_capacity(origins.len());
            for entry in origins.iter().filter(|e| *e != "*") {
                let by_host = !entry.contains(':');
                if is_literal(entry) {
                    entries.push(OriginEntry::Exact(normalize_origin(entry).0));
                    continue;
                }
                // Kong appends `$` when missing, strips a leading `^` and matches with
                // PCRE's anchored flag, which anchors every alternative at the start.
                let body = entry.strip_prefix('^').unwrap_or(entry);
                let dollar = if body.ends_with('$') { "" } else { "$" };
                let re = Regex::new(&format!("^(?:{body}{dollar})"))
                    .map_err(|e| format!("origin {entry:?} is not a valid regex: {e}"))?;
                entries.push(OriginEntry::Regex { re, by_host });
            }
            Origins::List {
                has_star: origins.iter().any(|e| e == "*"),
                entries,
            }
        };
        let max_age = conf.max_age.map(HeaderValue::from);
        Ok(Self {
            origins,
            credentials: conf.credentials,
            exposed_headers: joined(conf.exposed_headers.as_deref().unwrap_or_default())?,
            allow_headers: joined(conf.headers.as_deref().unwrap_or_default())?,
            methods: joined(&conf.methods)?.unwrap_or_else(|| {
                HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT")
            }),
            max_age,
            preflight_continue: conf.preflight_continue,
            private_network: conf.private_network,
        })
    }

    /// Runs the access phase: answers preflights (OPTIONS with `Origin` and
    /// `Access-Control-Request-Method`) unless `preflight_continue`.
    pub fn access(self: &Arc<Self>, req: &AccessRequest<'_>) -> CorsAccess {
        let origin = req.headers.get(ORIGIN);
        let preflight = req.method == Method::OPTIONS
            && origin.is_some()
            && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        if !preflight {
            return CorsAccess::Continue(Some(CorsState {
                plugin: self.clone(),
                origin: origin.cloned(),
            }));
        }
        // Preflights answered here or by the upstream get no response-phase headers.
        if self.preflight_continue {
            return CorsAccess::Continue(None);
        }
        let mut response = empty(StatusCode::OK);
        let headers = response.headers_mut();
        self.apply_origin(origin, headers);
        match (
            &self.allow_headers,
            req.headers.get(ACCESS_CONTROL_REQUEST_HEADERS),
        ) {
            (Some(allowed), _) | (None, Some(allowed)) => {
                headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allowed.clone());
            }
            (None, None) => {}
        }
        headers.insert(ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
        if let Some(max_age) = &self.max_age {
            headers.insert(ACCESS_CONTROL_MAX_AGE, max_age.clone());
        }
        if self.private_network
            && req
                .headers
                .get(REQUEST_PRIVATE_NETWORK)
                .is_some_and(|v| v == "true")
        {
            headers.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
        }
        CorsAccess::Preflight(response)
    }

    /// Kong's `configure_origin` + `configure_credentials` on a response.
    fn apply_origin(&self, req_origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        let (allow_origin, allow_all, mut vary) = self.decide(req_origin);
        match allow_origin {
            Some(v) => headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, v),
            // Kong clears a non-matching origin, including one set by the upstream.
            None => headers.remove(ACCESS_CONTROL_ALLOW_ORIGIN),
        };
        if self.credentials {
            if !allow_all {
                headers.insert(
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            } else if let Some(origin) = req_origin {
                // `*` cannot go with credentials: echo the request's origin instead.
                vary = true;
                headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                headers.insert(
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
        if vary {
            add_vary_origin(headers);
        }
    }

    /// (Access-Control-Allow-Origin value or none, whether all origins are allowed,
    /// whether `Vary: Origin` is due).
    fn decide(&self, req_origin: Option<&HeaderValue>) -> (Option<HeaderValue>, bool, bool) {
        let (has_star, entries) = match &self.origins {
            Origins::Any => return (Some(HeaderValue::from_static("*")), true, false),
            Origins::Single(v) => return (Some(v.clone()), false, true),
            Origins::List { has_star, entries } => (*has_star, entries),
        };
        let Some(origin) = req_origin.and_then(|o| o.to_str().ok()) else {
            return (None, false, true);
        };
        if has_star {
            return (Some(HeaderValue::from_static("*")), true, true);
        }
        let (domain, host) = normalize_origin(origin);
        let found = entries.iter().any(|entry| match entry {
            OriginEntry::Exact(d) => *d == domain,
            OriginEntry::Regex { re, by_host } => {
                re.is_match(if *by_host { &host } else { &domain })
            }
        });
        let allow = found.then(|| HeaderValue::from_str(&domain).ok()).flatten();
        (allow, false, true)
    }

    /// Kong's `header_filter`: CORS headers on a proxied (or short-circuited) response.
    fn response(&self, req_origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        self.apply_origin(req_origin, headers);
        if let Some(exposed) = &self.exposed_headers {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, exposed.clone());
        }
    }
}

impl CorsState {
    /// Adds the response-phase CORS headers.
    pub fn apply(&self, headers: &mut HeaderMap) {
        self.plugin.response(self.origin.as_ref(), headers);
    }
}

/// Appends `Vary: Origin` unless already there (keeps the response phase idempotent and
/// preserves the upstream's other `Vary` values).
fn add_vary_origin(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*")
            })
            .unwrap_or(false)
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
}

/// Kong's `normalize_origin`: `(scheme://host[:port], host)` with the scheme's default port
/// dropped; an origin without `scheme://` is returned unchanged for both.
fn normalize_origin(origin: &str) -> (String, String) {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return (origin.to_owned(), origin.to_owned());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(end) = authority.find(']') {
        let (host, rest) = authority.split_at(end + 1);
        (host, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return (origin.to_owned(), origin.to_owned());
    }
    let port = port.filter(|p| {
        let default_port = (scheme == "http" && *p == "80") || (scheme == "https" && *p == "443");
        !p.is_empty() && !default_port
    });
    let domain = match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    (domain, host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(origins: &[&str]) -> CorsPlugin {
        let conf = CorsConfig {
            origins: Some(origins.iter().map(|s| s.to_string()).collect()),
            ..CorsConfig::default()
        };
        CorsPlugin::new(conf).expect("valid config")
    }

    fn allowed(p: &CorsPlugin, origin: &str) -> Option<String> {
        let origin = HeaderValue::from_str(origin).ok();
        p.decide(origin.as_ref())
            .0
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    }

    #[test]
    fn normalizes_like_kong() {
        assert_eq!(
            normalize_origin("https://a.example.com:443"),
            ("https://a.example.com".into(), "a.example.com".into())
        );
        assert_eq!(
            normalize_origin("http://a.com:8080/x"),
            ("http://a.com:8080".into(), "a.com".into())
        );
        assert_eq!(
            normalize_origin("http://[::1]:80"),
            ("http://[::1]".into(), "[::1]".into())
        );
        assert_eq!(normalize_origin("a.com"), ("a.com".into(), "a.com".into()));
    }

    #[test]
    fn origin_modes() {
        assert_eq!(allowed(&plugin(&[]), "http://x"), Some("*".into()));
        assert_eq!(allowed(&plugin(&["*"]), "http://x"), Some("*".into()));
        // A single literal origin is sent whatever the request's origin is (Kong).
        assert_eq!(
            allowed(&plugin(&["http://a.com"]), "http://b.com"),
            Some("http://a.com".into())
        );
        let list = plugin(&["http://a.com", "https://b.com:443"]);
        assert_eq!(
            allowed(&list, "http://a.com:80"),
            Some("http://a.com".into())
        );
        assert_eq!(
            allowed(&list, "https://b.com"),
            Some("https://b.com".into())
        );
        assert_eq!(allowed(&list, "http://c.com"), None);
        let star = plugin(&["http://a.com", "*"]);
        assert_eq!(allowed(&star, "http://z.com"), Some("*".into()));
    }

    #[test]
    fn regex_origins_are_anchored() {
        // No ':' in the entry: matched against the host only.
        let by_host = plugin(&[r".*\.example\.com"]);
        assert_eq!(
            allowed(&by_host, "https://api.example.com"),
            Some("https://api.example.com".into())
        );
        assert_eq!(allowed(&by_host, "https://api.example.com.evil.io"), None);
        let by_domain = plugin(&[r"^https://(a|b)\.io$"]);
        assert_eq!(
            allowed(&by_domain, "https://b.io"),
            Some("https://b.io".into())
        );
        assert_eq!(allowed(&by_domain, "http://b.io"), None);
        assert_eq!(allowed(&by_domain, "https://b.io.x"), None);
        assert!(CorsPlugin::new(CorsConfig {
            origins: Some(vec!["(".into(), "b".into()]),
            ..CorsConfig::default()
        })
        .is_err());
    }

    #[test]
    fn vary_is_added_once() {
        let mut headers = HeaderMap::new();
        headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        add_vary_origin(&mut headers);
        add_vary_origin(&mut headers);
        let values: Vec<_> = headers.get_all(VARY).iter().collect();
        assert_eq!(values, ["Accept-Encoding", "Origin"]);
    }
}
