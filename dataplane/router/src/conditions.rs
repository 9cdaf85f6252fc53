//! A route's compiled non-host, non-path conditions, and its path groups.

use fleetgate_config::{Protocol, Route};
use http::header::{HeaderMap, HeaderName};
use std::sync::OnceLock;

use regex::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind, Look};

use crate::fast_regex::FastRegex;
use crate::{RouterError, Scheme};

/// Scheme bit for plain HTTP (http, grpc).
pub(crate) const SCHEME_HTTP: u8 = 1;
/// Scheme bit for TLS (https, grpcs).
pub(crate) const SCHEME_HTTPS: u8 = 2;

/// The scheme bit of a request.
pub(crate) fn scheme_bit(scheme: Scheme) -> u8 {
    match scheme {
        Scheme::Http => SCHEME_HTTP,
        Scheme::Https => SCHEME_HTTPS,
    }
}

/// The schemes a route accepts; grpc rides on http and grpcs on https, stream protocols
/// never reach this router.
pub(crate) fn scheme_mask(protocols: &[Protocol]) -> u8 {
    protocols.iter().fold(0, |mask, p| {
        mask | match p {
            Protocol::Http | Protocol::Grpc => SCHEME_HTTP,
            Protocol::Https | Protocol::Grpcs => SCHEME_HTTPS,
            Protocol::Tcp | Protocol::Tls | Protocol::Udp => 0,
        }
    })
}

/// One header condition: the header must be present with a value equal (ignoring ASCII
/// case) to one of `literals`, or matching one of `regexes` (Kong's `~*` values).
#[derive(Debug)]
pub(crate) struct HeaderCond {
    name: HeaderName,
    literals: Box<[Box<[u8]>]>,
    regexes: Box<[regex::bytes::Regex]>,
}

impl HeaderCond {
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers.get_all(&self.name).iter().any(|v| {
            let v = v.as_bytes();
            self.literals.iter().any(|l| l.eq_ignore_ascii_case(v))
                || self.regexes.iter().any(|r| r.is_match(v))
        })
    }
}

/// Conditions shared by every entry of one route.
#[derive(Debug)]
pub(crate) struct Conditions {
    /// Accepted schemes ([`SCHEME_HTTP`] | [`SCHEME_HTTPS`]).
    pub(crate) schemes: u8,
    methods: Box<[Box<str>]>,
    headers: Box<[HeaderCond]>,
    /// Lowercased, trailing dot removed.
    snis: Box<[Box<str>]>,
}

/// The request as the conditions see it.
pub(crate) struct Probe<'a> {
    pub(crate) scheme: u8,
    pub(crate) method: &'a str,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) sni: Option<&'a str>,
}

impl Conditions {
    /// Whether this route matches on request headers.
    pub(crate) fn uses_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    /// Compiles the conditions of `routes[index]`.
    pub(crate) fn compile(index: usize, route: &Route) -> Result<Conditions, RouterError> {
        let methods = route
            .methods
            .iter()
            .flatten()
            .map(|m| m.as_str().into())
            .collect();
        let mut headers = Vec::new();
        for (name, values) in route.headers.iter().flatten() {
            headers.push(compile_header(index, name, values)?);
        }
        let snis = route
            .snis
            .iter()
            .flatten()
            .map(|s| normalize_sni(s).into())
            .collect();
        Ok(Conditions {
            schemes: scheme_mask(&route.protocols),
            methods,
            headers: headers.into_boxed_slice(),
            snis,
        })
    }

    /// Whether everything but hosts and paths matches.
    #[inline]
    pub(crate) fn matches(&self, req: &Probe<'_>) -> bool {
        if self.schemes & req.scheme == 0 {
            return false;
        }
        // Kong compares methods as given (routes hold uppercase methods).
        if !self.methods.is_empty() && !self.methods.iter().any(|m| &**m == req.method) {
            return false;
        }
        // Kong: `net.protocol != "https" || tls.sni == ...`: snis only constrain TLS.
        if !self.snis.is_empty() && req.scheme == SCHEME_HTTPS {
            let Some(sni) = req.sni else {
                return false;
            };
            let sni = sni.strip_suffix('.').unwrap_or(sni);
            if !self.snis.iter().any(|s| s.eq_ignore_ascii_case(sni)) {
                return false;
            }
        }
        self.headers.iter().all(|h| h.matches(req.headers))
    }
}

/// Methods with a bit in a route's method mask, compared case-sensitively as Kong does.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The mask bit of a method, 0 for a method without one.
#[inline]
pub(crate) fn method_bit(method: &str) -> u16 {
    STANDARD_METHODS
        .iter()
        .position(|m| *m == method)
        .map_or(0, |i| 1 << i)
}

/// What a lookup can check without the full [`Conditions`]: `(flags, methods)` for
/// [`crate::path_index::Item`].
pub(crate) struct Summary {
    /// Scheme bits plus `SLOW` / `METHODS` from [`crate::path_index::flags`].
    pub(crate) flags: u8,
    /// Mask of the accepted standard methods.
    pub(crate) methods: u16,
}

impl Conditions {
    /// The conditions in the form stored inline in the path index.
    pub(crate) fn summary(&self) -> Summary {
        use crate::path_index::flags;
        let mut out = Summary {
            flags: self.schemes & flags::SCHEMES,
            methods: 0,
        };
        if !self.headers.is_empty() || !self.snis.is_empty() {
            out.flags |= flags::SLOW;
        }
        if !self.methods.is_empty() {
            let bits: Vec<u16> = self.methods.iter().map(|m| method_bit(m)).collect();
            if bits.contains(&0) {
                out.flags |= flags::SLOW;
            } else {
                out.flags |= flags::METHODS;
                out.methods = bits.iter().fold(0, |a, b| a | b);
            }
        }
        out
    }
}

/// Kong ignores the trailing dot of a fully qualified SNI.
fn normalize_sni(s: &str) -> String {
    let s = if s.len() > 1 {
        s.strip_suffix('.').unwrap_or(s)
    } else {
        s
    };
    s.to_ascii_lowercase()
}

fn compile_header(index: usize, name: &str, values: &[String]) -> Result<HeaderCond, RouterError> {
    let bad = |reason: String| RouterError::BadHeader {
        index,
        name: name.to_owned(),
        reason,
    };
    let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|e| bad(format!("invalid header name: {e}")))?;
    let mut literals = Vec::new();
    let mut regexes = Vec::new();
    for value in values {
        match value.strip_prefix("~*") {
            // Kong lowercases both sides before an unanchored regex search; a
            // case-insensitive regex has the same effect without rewriting escapes.
            Some(pattern) => regexes.push(
                regex::bytes::RegexBuilder::new(pattern)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| bad(format!("invalid regex '{pattern}': {e}")))?,
            ),
            None => literals.push(value.as_bytes().into()),
        }
    }
    Ok(HeaderCond {
        name: header,
        literals: literals.into_boxed_slice(),
        regexes: regexes.into_boxed_slice(),
    })
}

/// How one entry (a route's group of paths) matches the request path.
#[derive(Debug)]
pub(crate) enum PathRule {
    /// The route has no paths: any path matches, nothing is matched.
    Any,
    /// Prefix paths of this byte length; the index only offers the entry when one of
    /// them is a prefix of the request path.
    Prefix(usize),
    /// Regex paths in route order, each anchored at the start as Kong does.
    Regex(Box<[PathRegex]>),
}

impl PathRule {
    /// `None` when the path does not match, else the matched length (`None` for [`Any`]).
    ///
    /// [`Any`]: PathRule::Any
    #[inline]
    pub(crate) fn check(&self, path: &str) -> Option<Option<usize>> {
        match self {
            PathRule::Any => Some(None),
            PathRule::Prefix(len) => Some(Some(*len)),
            // Kong strips `#captures[0]` bytes, i.e. the length of the whole match; the
            // first regex of the group that matches wins, as in Kong's `||` chain.
            PathRule::Regex(list) => list.iter().find_map(|r| r.find_len(path).map(Some)),
        }
    }
}

/// A regex path compiled on first use. Compiling costs ~100 µs per regex, which would
/// make building 10k-route configs take a second; the pattern is parsed (validated) at
/// build time instead, and [`crate::Router::precompile_regexes`] can compile them all
/// ahead of traffic.
#[derive(Debug)]
pub(crate) struct PathRegex {
    /// Direct matcher when the pattern has the simple shape [`FastRegex`] handles.
    fast: Option<FastRegex>,
    anchored: String,
    /// `None` inside when the parsed pattern still fails to compile (only size limits can
    /// do that); such a regex never matches.
    compiled: OnceLock<Option<Regex>>,
}

impl PathRegex {
    /// The compiled regex, compiling it now if needed.
    pub(crate) fn regex(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| Regex::new(&self.anchored).ok())
            .as_ref()
    }

    /// Compiles the regex now unless the direct matcher handles it.
    pub(crate) fn precompile(&self) {
        if self.fast.is_none() {
            self.regex();
        }
    }

    fn find_len(&self, path: &str) -> Option<usize> {
        match &self.fast {
            Some(fast) => fast.find_len(path),
            None => self.regex()?.find(path).map(|m| m.len()),
        }
    }
}

/// A parsed Kong regex path (without its `~`): the lazily compiled regex and the literal
/// byte strings of which every match starts with one, used to file the entry in the path
/// index so only plausible regexes run (`[""]` when nothing useful is known).
pub(crate) fn parse_path_regex(
    index: usize,
    pattern: &str,
) -> Result<(PathRegex, Vec<Vec<u8>>), RouterError> {
    let anchored = anchored(pattern);
    let hir = regex_syntax::Parser::new()
        .parse(&anchored)
        .map_err(|e| RouterError::BadPath {
            index,
            reason: format!(
                "invalid regex '{pattern}': {}",
                e.to_string().replace('\n', " ")
            ),
        })?;
    let regex = PathRegex {
        fast: FastRegex::new(&anchored, &hir),
        anchored,
        compiled: OnceLock::new(),
    };
    Ok((regex, literal_prefixes(&hir)))
}

/// Kong prepends `^` textually, so `a|b` becomes `^a|b` (only the first branch anchored);
/// this is reproduced on purpose.
fn anchored(pattern: &str) -> String {
    format!("^{pattern}")
}

/// Most literal prefixes a regex is filed under before falling back to their common prefix.
const MAX_REGEX_KEYS: usize = 8;

fn literal_prefixes(hir: &Hir) -> Vec<Vec<u8>> {
    let unknown = || vec![Vec::new()];
    // Only a top-level concatenation that starts with `^` guarantees every match starts
    // at offset 0 (a top-level alternation leaves later branches unanchored).
    let rest = match hir.kind() {
        HirKind::Concat(parts)
            if matches!(
                parts.first().map(Hir::kind),
                Some(HirKind::Look(Look::Start))
            ) =>
        {
            Hir::concat(parts[1..].to_vec())
        }
        _ => return unknown(),
    };
    let mut seq = Extractor::new().kind(ExtractKind::Prefix).extract(&rest);
    seq.dedup();
    match seq.literals() {
        Some(lits) if !lits.is_empty() && lits.len() <= MAX_REGEX_KEYS => {
            lits.iter().map(|l| l.as_bytes().to_vec()).collect()
        }
        Some(lits) if !lits.is_empty() => {
            vec![seq
                .longest_common_prefix()
                .map(<[u8]>::to_vec)
                .unwrap_or_default()]
        }
        _ => unknown(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str) -> (PathRegex, Vec<Vec<u8>>) {
        parse_path_regex(0, p).unwrap_or_else(|e| panic!("{e}"))
    }

    fn keys(p: &str) -> Vec<String> {
        parse(p)
            .1
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect()
    }

    #[test]
    fn extracts_literal_prefixes() {
        assert_eq!(keys(r"/users/\d+$"), vec!["/users/"]);
        assert_eq!(keys(r"/a(b|c)/x"), vec!["/ab/x", "/ac/x"]);
        assert_eq!(keys(r".*"), vec![""]);
        // Top-level alternation: `^/a|/b` leaves `/b` unanchored.
        assert_eq!(keys(r"/a|/b"), vec![""]);
        assert_eq!(keys(r"/ab?c"), vec!["/abc", "/ac"]);
    }

    #[test]
    fn regex_rule_reports_match_length() {
        let rule = PathRule::Regex(vec![parse(r"/u/\d+").0].into());
        assert_eq!(rule.check("/u/123/x"), Some(Some(6)));
        assert_eq!(rule.check("/x/u/1"), None);
    }
}
