//! The path sent upstream (Kong's `strip_path` and `path_handling` rules).

use fleetgate_config::PathHandling;

use crate::RouteMatch;

/// Kong's `sanitize_uri_postfix`: a postfix that would start with a dot segment after
/// stripping loses it, so stripping cannot produce `..` traversal upstream.
fn sanitize_postfix(postfix: &str) -> &str {
    match postfix {
        "." | ".." => "",
        _ => postfix
            .strip_prefix("./")
            .or_else(|| postfix.strip_prefix("../"))
            .unwrap_or(postfix),
    }
}

/// The path sent upstream, by Kong's rules (query string handled by the caller).
///
/// The service path defaults to `/`. The *postfix* is the request path after the matched
/// prefix when the route strips a path it matched, otherwise the request path without its
/// leading slash. Then:
/// - `v0` (Kong's default, `get_upstream_uri_v0`) joins segments with exactly one slash:
///   service `/s` + route `/r` (stripped) + request `/r/x` gives `/s/x`; a request equal
///   to the matched prefix gives `/s` (or `/s/` if the request ended with a slash);
///   without stripping, `/s` + `/r/x` gives `/s/r/x`.
/// - `v1` treats the service path as a plain prefix: `/s` + postfix `x` gives `/sx`,
///   collapsing a double slash at the junction; without stripping, the service path plus
///   the request path minus its leading slash.
///
/// Kong's `traditional_compatible` flavour ignores `v1` (it always applies `v0`); this
/// implements `v1` as the traditional router and Kong's documented table describe it.
pub fn upstream_path(request_path: &str, m: &RouteMatch<'_>, service_path: Option<&str>) -> String {
    // Kong's request URI always starts with a slash.
    let req = if request_path.is_empty() {
        "/"
    } else {
        request_path
    };
    let base = match service_path {
        Some(p) if !p.is_empty() => p,
        _ => "/",
    };
    let strip = m.route.strip_path;
    let raw_postfix = match (strip, m.matched_len) {
        (true, Some(n)) => req.get(n..).unwrap_or(""),
        _ => req.get(1..).unwrap_or(""),
    };
    let postfix = sanitize_postfix(raw_postfix);
    match m.route.path_handling {
        PathHandling::V0 => join_v0(base, postfix, req, strip),
        PathHandling::V1 => join_v1(base, postfix, req, strip),
    }
}

/// Kong's `get_upstream_uri_v0`.
fn join_v0(base: &str, postfix: &str, req: &str, strip: bool) -> String {
    let base_trimmed = base.strip_suffix('/');
    match (base_trimmed, strip) {
        // Service path ends with a slash.
        (Some(trimmed), true) => {
            if postfix.is_empty() {
                if base == "/" {
                    "/".to_owned()
                } else if req.ends_with('/') {
                    base.to_owned()
                } else {
                    trimmed.to_owned()
                }
            } else if postfix.starts_with('/') {
                format!("{trimmed}{postfix}")
            } else {
                format!("{base}{postfix}")
            }
        }
        (Some(_), false) => format!("{base}{}", &req[1..]),
        // Service path does not end with a slash.
        (None, true) => {
            if postfix.is_empty() {
                if req.len() > 1 && req.ends_with('/') {
                    format!("{base}/")
                } else {
                    base.to_owned()
                }
            } else if postfix.starts_with('/') {
                format!("{base}{postfix}")
            } else {
                format!("{base}/{postfix}")
            }
        }
        (None, false) => {
            if req == "/" {
                base.to_owned()
            } else {
                format!("{base}{req}")
            }
        }
    }
}

/// Kong's traditional router, `path_handling == "v1"`.
fn join_v1(base: &str, postfix: &str, req: &str, strip: bool) -> String {
    if !strip {
        return format!("{base}{}", &req[1..]);
    }
    match base.strip_suffix('/') {
        Some(trimmed) if postfix.starts_with('/') => format!("{trimmed}{postfix}"),
        _ => format!("{base}{postfix}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_dot_segments() {
        assert_eq!(sanitize_postfix("."), "");
        assert_eq!(sanitize_postfix(".."), "");
        assert_eq!(sanitize_postfix("../x"), "x");
        assert_eq!(sanitize_postfix("./x"), "x");
        assert_eq!(sanitize_postfix("/x"), "/x");
    }
}
