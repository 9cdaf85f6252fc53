//! Small validation helpers shared by the entities: an error collector and Kong's rules for
//! names, hosts and wildcards.

use std::net::{IpAddr, Ipv6Addr};

use crate::entity::FieldError;

/// Collects field errors so that validation reports every problem, not just the first.
#[derive(Debug, Default)]
pub(crate) struct Errors(pub Vec<FieldError>);

impl Errors {
    /// Records a problem with `field`.
    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError::new(field, reason));
    }

    /// Records `errors` with `prefix` put in front of their paths.
    pub fn extend_prefixed(&mut self, prefix: &str, errors: Vec<FieldError>) {
        self.0
            .extend(errors.into_iter().map(|e| e.prefixed(prefix)));
    }

    /// `Ok` when nothing was recorded.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// Kong's rule for entity names: letters, digits and `.-_~`.
pub(crate) fn check_name(errors: &mut Errors, field: &str, name: Option<&str>) {
    let Some(name) = name else { return };
    if name.is_empty() {
        errors.add(field, "must not be empty");
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~'))
    {
        errors.add(
            field,
            "invalid value: it must only contain alphanumeric and '., -, _, ~' characters",
        );
    }
}

/// Tags are free text in Kong, but empty ones are refused and they must be printable.
pub(crate) fn check_tags(errors: &mut Errors, tags: &[String]) {
    for (i, tag) in tags.iter().enumerate() {
        if tag.is_empty() || tag.chars().any(|c| c.is_control() || c == ',') {
            errors.add(
                format!("tags[{i}]"),
                "must be non-empty printable text without commas",
            );
        }
    }
}

/// Is `s` an IPv4 or IPv6 address (IPv6 optionally in brackets)?
pub(crate) fn is_ip(s: &str) -> bool {
    let bare = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>().is_ok()
}

/// One DNS label; underscores are tolerated because container names use them.
fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Is `s` a hostname (no port, no wildcard)?
pub(crate) fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

/// Is `s` a host Kong can connect to: a hostname or an IP address.
pub(crate) fn is_host(s: &str) -> bool {
    is_ip(s) || is_hostname(s)
}

/// Splits an optional `:port` suffix off a host (`[::1]:80`, `example.com:8080`); the port
/// is `Err` when present but not a number in range.
pub(crate) fn split_host_port(s: &str) -> (&str, Option<Result<u16, ()>>) {
    if let Some(rest) = s.strip_prefix('[') {
        // Bracketed IPv6: the port, if any, follows the closing bracket.
        return match rest.find(']') {
            Some(end) => {
                let host = &s[..end + 2];
                match s[end + 2..].strip_prefix(':') {
                    Some(port) => (host, Some(port.parse::<u16>().map_err(|_| ()))),
                    None => (host, None),
                }
            }
            None => (s, None),
        };
    }
    if s.parse::<Ipv6Addr>().is_ok() {
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| ()))),
        None => (s, None),
    }
}

/// Kong's rule for route hosts: a hostname or IP with optional port, where a wildcard may
/// only be the whole leftmost or rightmost label (`*.example.com`, `example.*`).
pub(crate) fn check_route_host(host: &str) -> Result<(), String> {
    let (name, port) = split_host_port(host);
    if let Some(Err(())) = port {
        return Err(format!("invalid port in '{host}'"));
    }
    let stars = name.matches('*').count();
    if stars == 0 {
        return if is_host(name) {
            Ok(())
        } else {
            Err(format!("invalid hostname: '{host}'"))
        };
    }
    let rest = if stars == 1 {
        name.strip_prefix("*.").or_else(|| name.strip_suffix(".*"))
    } else {
        None
    };
    match rest {
        Some(rest) if is_hostname(rest) => Ok(()),
        _ => Err(format!(
            "invalid wildcard: '{host}': a wildcard must be the leftmost or rightmost label only"
        )),
    }
}

/// Kong's rule for SNI names: a hostname (not an IP), optionally with a leftmost wildcard.
pub(crate) fn check_sni_name(name: &str) -> Result<(), String> {
    if is_ip(name) {
        return Err("must not be an IP address".into());
    }
    let bare = name.strip_prefix("*.").unwrap_or(name);
    if bare.contains('*') {
        return Err("a wildcard must be the leftmost label only".into());
    }
    if !is_hostname(bare) || bare.contains(':') {
        return Err(format!("invalid hostname: '{name}'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_wildcards() {
        assert!(check_route_host("example.com").is_ok());
        assert!(check_route_host("*.example.com").is_ok());
        assert!(check_route_host("example.*").is_ok());
        assert!(check_route_host("example.com:8080").is_ok());
        assert!(check_route_host("[::1]:80").is_ok());
        assert!(check_route_host("a.*.com").is_err());
        assert!(check_route_host("*.*.com").is_err());
        assert!(check_route_host("ex ample").is_err());
        assert!(check_sni_name("*.example.com").is_ok());
        assert!(check_sni_name("example.*").is_err());
        assert!(check_sni_name("10.0.0.1").is_err());
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a:1"), ("a", Some(Ok(1))));
        assert_eq!(split_host_port("a"), ("a", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("[::1]:9"), ("[::1]", Some(Ok(9))));
        assert_eq!(split_host_port("a:x"), ("a", Some(Err(()))));
    }
}
