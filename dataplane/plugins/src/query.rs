//! Just enough query-string handling for key-auth: find one parameter the way nginx's
//! `ngx.req.get_uri_args` decodes it, and remove it while keeping the rest byte for byte.

use std::borrow::Cow;

/// A parameter's presence in a query string, as `ngx.req.get_uri_args` reports it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueryValue {
    /// Not present.
    Absent,
    /// Present without `=` (nginx yields boolean `true`; key-auth ignores it).
    Flag,
    /// Present once with a value.
    One(String),
    /// Present more than once (nginx yields a table; key-auth calls it a duplicate).
    Many,
}

/// Finds the parameter `name` in the raw query `query`.
pub(crate) fn lookup(query: &str, name: &str) -> QueryValue {
    let mut found = QueryValue::Absent;
    for (key, value) in pairs(query) {
        if decode(key) != name {
            continue;
        }
        if found != QueryValue::Absent {
            return QueryValue::Many;
        }
        found = match value {
            Some(v) => QueryValue::One(decode(v).into_owned()),
            None => QueryValue::Flag,
        };
    }
    found
}

/// The query without any parameter named `name`; `None` when nothing is left.
pub(crate) fn remove(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .filter(|segment| decode(segment.split('=').next().unwrap_or_default()) != name)
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("&"))
    }
}

/// `(key, value)` pairs; value is `None` for a segment without `=`.
fn pairs(query: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| match segment.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (segment, None),
        })
}

/// Form decoding: `+` is a space and `%XX` a byte; malformed escapes stay as written
/// (nginx does the same), and invalid UTF-8 is replaced rather than rejected.
fn decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_decoded_values() {
        assert_eq!(
            lookup("a=1&apikey=k%20y+z", "apikey"),
            QueryValue::One("k y z".into())
        );
        assert_eq!(lookup("api%6Bey=x", "apikey"), QueryValue::One("x".into()));
        assert_eq!(lookup("a=1", "apikey"), QueryValue::Absent);
        assert_eq!(lookup("apikey", "apikey"), QueryValue::Flag);
        assert_eq!(lookup("apikey=", "apikey"), QueryValue::One(String::new()));
        assert_eq!(lookup("apikey=a&apikey=b", "apikey"), QueryValue::Many);
        assert_eq!(lookup("apikey=a&&apikey", "apikey"), QueryValue::Many);
        assert_eq!(lookup("x=%zz%4", "x"), QueryValue::One("%zz%4".into()));
    }

    #[test]
    fn removes_only_the_named_parameter() {
        assert_eq!(
            remove("a=1&apikey=k&b=%20", "apikey").as_deref(),
            Some("a=1&b=%20")
        );
        assert_eq!(remove("apikey=k", "apikey"), None);
        assert_eq!(remove("apikey&apikey=2&c", "apikey").as_deref(), Some("c"));
        assert_eq!(remove("a=1", "apikey").as_deref(), Some("a=1"));
    }
}
