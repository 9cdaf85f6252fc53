//! A direct matcher for the most common shape of Kong regex paths, `^literal`, optionally
//! followed by one greedy repetition of a character class and optionally anchored at the
//! end (`~/users/\d+$`). Running the `regex` crate costs dozens of cache misses per search
//! once there are thousands of regexes (each has its own compiled program and cache);
//! this needs a handful. Anything else keeps using the `regex` crate.
//!
//! The semantics are the regex crate's leftmost-first search from offset 0: a greedy
//! repetition at the end of the pattern takes as many characters as it can (up to its
//! maximum); with the end anchor, the match exists only when that run reaches the end of
//! the path (a shorter run cannot, and a longer one is not allowed).

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// Longest pattern handled here; longer ones go to the regex crate, which also enforces
/// its size limits on them.
const MAX_PATTERN: usize = 1024;

/// A greedy `class{min,max}`.
#[derive(Debug)]
struct Repeat {
    /// Bit `c` set: ASCII character `c` is in the class. Paths are nearly always ASCII,
    /// so the ranges (another allocation, another cache miss) are rarely read.
    ascii: u128,
    /// Sorted, non-overlapping inclusive ranges.
    ranges: Box<[(char, char)]>,
    min: u32,
    max: Option<u32>,
}

/// A compiled `^literal(class{min,max})?$?`.
#[derive(Debug)]
pub(crate) struct FastRegex {
    literal: Box<[u8]>,
    /// The repeated class, if any.
    class: Option<Repeat>,
    /// Anchored at the end of the path (`$`).
    end: bool,
}

impl FastRegex {
    /// The matcher for `hir` (the parse of `anchored`), if it has the supported shape.
    pub(crate) fn new(anchored: &str, hir: &Hir) -> Option<FastRegex> {
        if anchored.len() > MAX_PATTERN {
            return None;
        }
        let parts = match hir.kind() {
            HirKind::Concat(parts) => parts.as_slice(),
            _ => std::slice::from_ref(hir),
        };
        let (first, mut rest) = parts.split_first()?;
        if !matches!(first.kind(), HirKind::Look(Look::Start)) {
            return None;
        }
        let mut literal = Vec::new();
        while let Some((part, tail)) = rest.split_first() {
            let HirKind::Literal(lit) = part.kind() else {
                break;
            };
            literal.extend_from_slice(&lit.0);
            rest = tail;
        }
        let mut class = None;
        if let Some((part, tail)) = rest.split_first() {
            if let HirKind::Repetition(rep) = part.kind() {
                let HirKind::Class(Class::Unicode(c)) = rep.sub.kind() else {
                    return None;
                };
                if !rep.greedy {
                    return None;
                }
                let ranges: Box<[(char, char)]> =
                    c.ranges().iter().map(|r| (r.start(), r.end())).collect();
                let ascii = (0..128u8)
                    .filter(|&b| in_class(&ranges, char::from(b)))
                    .fold(0u128, |bits, b| bits | 1 << b);
                class = Some(Repeat {
                    ascii,
                    ranges,
                    min: rep.min,
                    max: rep.max,
                });
                rest = tail;
            }
        }
        let end = match rest {
            [] => false,
            [last] if matches!(last.kind(), HirKind::Look(Look::End)) => true,
            _ => return None,
        };
        Some(FastRegex {
            literal: literal.into_boxed_slice(),
            class,
            end,
        })
    }

    /// Length of the match at the start of `path`, if any.
    #[inline]
    pub(crate) fn find_len(&self, path: &str) -> Option<usize> {
        let rest = path.strip_prefix_bytes(&self.literal)?;
        let mut len = self.literal.len();
        if let Some(Repeat {
            ascii,
            ranges,
            min,
            max,
        }) = &self.class
        {
            let mut count = 0u32;
            for c in rest.chars() {
                let member = if c.is_ascii() {
                    ascii & 1 << (c as u32) != 0
                } else {
                    in_class(ranges, c)
                };
                if max.is_some_and(|m| count >= m) || !member {
                    break;
                }
                count += 1;
                len += c.len_utf8();
            }
            if count < *min {
                return None;
            }
        }
        (!self.end || len == path.len()).then_some(len)
    }
}

fn in_class(ranges: &[(char, char)], c: char) -> bool {
    let i = ranges.partition_point(|&(_, hi)| hi < c);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= c)
}

/// `str::strip_prefix` for a byte prefix that may end inside a character (then the rest
/// is not a `str`, and no match can continue past it).
trait StripBytes {
    fn strip_prefix_bytes(&self, prefix: &[u8]) -> Option<&str>;
}

impl StripBytes for str {
    fn strip_prefix_bytes(&self, prefix: &[u8]) -> Option<&str> {
        if !self.as_bytes().starts_with(prefix) {
            return None;
        }
        self.get(prefix.len()..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast(pattern: &str) -> Option<FastRegex> {
        let anchored = format!("^{pattern}");
        let hir = regex_syntax::Parser::new()
            .parse(&anchored)
            .unwrap_or_else(|e| panic!("{e}"));
        FastRegex::new(&anchored, &hir)
    }

    #[test]
    fn recognises_only_the_simple_shape() {
        for p in [
            r"/a/\d+",
            r"/b/\w+$",
            "/x",
            "/x$",
            r"/a\d{2,3}",
            r"/é[a-z]*",
            "",
            "/a.*",
        ] {
            assert!(fast(p).is_some(), "{p}");
        }
        for p in ["/a|/b", r"/a\d+?", r"/a\d+/x", "(?i)/ab", r"/a\d+\d", "/a+"] {
            assert!(fast(p).is_none(), "{p}");
        }
    }

    #[test]
    fn agrees_with_the_regex_crate() {
        let patterns = [
            r"/a/\d+",
            r"/b/\w+$",
            "/x",
            "/x$",
            r"/a\d{2,3}",
            r"/a\d{2,3}$",
            r"/é[a-z]*",
            r"/u/\d*$",
            r"/[^/]+",
            "",
            "$",
            "/a.*",
            "/a.*$",
            // Classes across the ASCII boundary: the bitmap answers below 128, the ranges
            // above.
            r"/[\x00-\x7f]+",
            r"/[^a]*",
            r"/\D+$",
            r"/[\x7f-é]+",
        ];
        let paths = [
            "",
            "/",
            "/a/",
            "/a/1",
            "/a/123x",
            "/a/١٢",
            "/b/xy",
            "/b/x/y",
            "/x",
            "/xy",
            "/a1",
            "/a12",
            "/a1234",
            "/a123",
            "/é",
            "/éabc/",
            "/u/",
            "/u/12",
            "/u/1a",
            "/zz/q",
            "/é",
            "/a\nb",
            "/ab\n",
            "/\u{7f}x",
            "/x\u{7f}é",
            "/\u{80}",
            "/aé\0",
            "/é\u{7f}",
        ];
        for p in patterns {
            let anchored = format!("^{p}");
            let re = regex::Regex::new(&anchored).unwrap_or_else(|e| panic!("{e}"));
            let f = fast(p).unwrap_or_else(|| panic!("{p} not fast"));
            for path in paths {
                let want = re.find(path).map(|m| m.len());
                assert_eq!(f.find_len(path), want, "pattern {p} path {path}");
            }
        }
    }
}
