//! Host names: splitting off ports and classifying route hosts.

/// How a route host matches the request's host name (already lowercased, port removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// `example.com`: equal names.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: the name ends with it (Kong's `=^`
    /// postfix operator, so `a.b.example.com` matches too).
    Suffix(String),
    /// `example.*`, stored as `example.`: the name starts with it (Kong's `^=`).
    Prefix(String),
}

/// A route host: the name pattern and the port it requires, if it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteHost {
    pub(crate) pattern: HostPattern,
    pub(crate) port: Option<u16>,
}

impl RouteHost {
    /// Parses a route's `hosts` element (validated by the config crate). A suffix that is
    /// not a number is kept as part of the name, as Kong's `split_host_port` does.
    pub(crate) fn parse(host: &str) -> RouteHost {
        let (name, port) = split_host_port(host);
        let name = name.to_ascii_lowercase();
        let pattern = if let Some(rest) = name.strip_prefix('*') {
            HostPattern::Suffix(rest.to_owned())
        } else if let Some(rest) = name.strip_suffix('*') {
            HostPattern::Prefix(rest.to_owned())
        } else {
            HostPattern::Exact(name)
        };
        RouteHost { pattern, port }
    }

    /// Whether a request host name (lowercased, without port) and effective port match
    /// (the router matches through its host maps instead; this states the rule for tests).
    #[cfg(test)]
    pub(crate) fn matches(&self, name: &[u8], port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.pattern {
            HostPattern::Exact(h) => name == h.as_bytes(),
            HostPattern::Suffix(s) => name.ends_with(s.as_bytes()),
            HostPattern::Prefix(p) => name.starts_with(p.as_bytes()),
        }
    }
}

/// Splits `host[:port]`; a bracketed IPv6 literal keeps its brackets. A port that does
/// not parse leaves the whole string as the name.
pub(crate) fn split_host_port(s: &str) -> (&str, Option<u16>) {
    let colon = if s.starts_with('[') {
        // Only a colon right after the closing bracket introduces a port.
        match s.find(']') {
            Some(end) if s.as_bytes().get(end + 1) == Some(&b':') => Some(end + 1),
            _ => None,
        }
    } else {
        s.rfind(':')
    };
    match colon {
        Some(i) => match s[i + 1..].parse::<u16>() {
            Ok(port) => (&s[..i], Some(port)),
            Err(_) => (s, None),
        },
        None => (s, None),
    }
}

/// Longest host name lowercased on the stack; longer ones (invalid as DNS names anyway)
/// fall back to a heap copy.
const STACK_HOST: usize = 256;

/// A request host name lowercased without copying in the common case (clients send
/// lowercase names), and without allocating unless it is longer than [`STACK_HOST`].
// Lives on the stack for one lookup; boxing the buffer would put an allocation back.
#[allow(clippy::large_enum_variant)]
pub(crate) enum LowerHost<'a> {
    /// Already lowercase: the request's own bytes.
    Borrowed(&'a [u8]),
    /// Lowercased into a stack buffer.
    Stack([u8; STACK_HOST], usize),
    /// Lowercased into the heap (over-long names).
    Heap(Vec<u8>),
}

impl<'a> LowerHost<'a> {
    /// Lowercases `name` (ASCII only, as DNS names are case-insensitive in ASCII).
    pub(crate) fn new(name: &'a str) -> LowerHost<'a> {
        let bytes = name.as_bytes();
        // A fold rather than `any`: no early exit, so it compiles to a vector loop.
        if !bytes
            .iter()
            .fold(false, |up, b| up | b.is_ascii_uppercase())
        {
            LowerHost::Borrowed(bytes)
        } else if bytes.len() <= STACK_HOST {
            let mut buf = [0u8; STACK_HOST];
            buf[..bytes.len()].copy_from_slice(bytes);
            buf[..bytes.len()].make_ascii_lowercase();
            LowerHost::Stack(buf, bytes.len())
        } else {
            LowerHost::Heap(bytes.to_ascii_lowercase())
        }
    }

    /// The lowercased bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            LowerHost::Borrowed(b) => b,
            LowerHost::Stack(buf, len) => &buf[..*len],
            LowerHost::Heap(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_ports() {
        assert_eq!(split_host_port("a.com"), ("a.com", None));
        assert_eq!(split_host_port("a.com:8080"), ("a.com", Some(8080)));
        assert_eq!(split_host_port("a.com:x"), ("a.com:x", None));
        assert_eq!(split_host_port("[::1]:443"), ("[::1]", Some(443)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("example.*:80"), ("example.*", Some(80)));
    }

    #[test]
    fn parses_patterns() {
        let h = RouteHost::parse("*.Example.com:81");
        assert_eq!(h.pattern, HostPattern::Suffix(".example.com".into()));
        assert_eq!(h.port, Some(81));
        assert!(h.matches(b"a.b.example.com", 81));
        assert!(!h.matches(b"a.example.com", 80));
        assert!(!h.matches(b"example.com", 81));
        let h = RouteHost::parse("example.*");
        assert!(h.matches(b"example.org", 1));
        assert!(!h.matches(b"example", 1));
    }

    #[test]
    fn lowercases_long_hosts() {
        let long = "A".repeat(300);
        assert_eq!(LowerHost::new(&long).as_bytes(), "a".repeat(300).as_bytes());
        assert_eq!(LowerHost::new("Foo.COM").as_bytes(), b"foo.com");
    }
}
