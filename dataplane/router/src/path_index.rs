//! A set of byte-string keys answering "which keys are prefixes of this path?".
//!
//! Kong's prefix paths are plain byte prefixes (`/foo` matches `/foobar`), so a
//! segment-aware trie would be wrong. Instead the keys are kept sorted, and every key
//! remembers its longest proper prefix that is also a key (its "parent"). Every key that
//! is a prefix of a path `P` is a prefix of the predecessor `s` of `P` in sorted order
//! (any string between a prefix `q` of `P` and `P` itself starts with `q`), so one binary
//! search plus a walk up `s`'s parent chain finds them all, longest first.

use std::collections::HashMap;

use foldhash::fast::RandomState;

/// Marks "no parent" in [`PathIndex::parent`].
const NONE: u32 = u32::MAX;

/// One candidate stored under a key, carrying everything a lookup needs to accept or
/// reject it without touching other memory in the common case: the entry's rank (its
/// position in the router's priority order, lower is better), its route, an optional
/// port the request must carry (from a route host such as `example.com:8080`) and a
/// summary of the route's conditions (see [`flags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Item {
    /// Rank of the entry: index into the router's rank-ordered entries.
    pub(crate) rank: u32,
    /// Index of the route in `config.routes`.
    pub(crate) route: u32,
    /// Port required by the route host that put the entry into this bucket (valid when
    /// [`flags::HAS_PORT`] is set).
    pub(crate) port: u16,
    /// Standard methods accepted (valid when [`flags::METHODS`] is set).
    pub(crate) methods: u16,
    /// [`flags`] bits.
    pub(crate) flags: u8,
}

impl Item {
    /// The port this item requires, if any.
    #[inline]
    pub(crate) fn port(&self) -> Option<u16> {
        (self.flags & flags::HAS_PORT != 0).then_some(self.port)
    }
}

/// Bits of [`Item::flags`].
pub(crate) mod flags {
    /// Accepted schemes occupy the low two bits (`SCHEME_HTTP | SCHEME_HTTPS`).
    pub(crate) const SCHEMES: u8 = 0b11;
    /// [`super::Item::port`] is set.
    pub(crate) const HAS_PORT: u8 = 1 << 2;
    /// The route's full conditions must be checked (headers, snis, unusual methods).
    pub(crate) const SLOW: u8 = 1 << 3;
    /// The request method must be in [`super::Item::methods`].
    pub(crate) const METHODS: u8 = 1 << 4;
    /// Prefix entry: matched length is the key length.
    pub(crate) const PREFIX: u8 = 1 << 5;
    /// Regex entry: the router's entry holds the regexes.
    pub(crate) const REGEX: u8 = 1 << 6;
}

/// Items grouped by key while a bucket is being built.
#[derive(Debug, Default)]
pub(crate) struct PathIndexBuilder {
    items: HashMap<Vec<u8>, Vec<Item>, RandomState>,
}

impl PathIndexBuilder {
    /// Files `item` under `key`.
    pub(crate) fn insert(&mut self, key: &[u8], item: Item) {
        match self.items.get_mut(key) {
            Some(list) => list.push(item),
            None => {
                self.items.insert(key.to_vec(), vec![item]);
            }
        }
    }

    /// Freezes the builder: keys sorted, parents linked, every item list in rank order
    /// (so a lookup can stop at the first item that cannot beat the best match so far).
    pub(crate) fn finish(self) -> PathIndex {
        let mut pairs: Vec<(Vec<u8>, Vec<Item>)> = self.items.into_iter().collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // The common prefix of all keys is that of the first and last in sorted order.
        let skip = match (pairs.first(), pairs.last()) {
            (Some(a), Some(b)) => a.0.iter().zip(&b.0).take_while(|(x, y)| x == y).count(),
            _ => 0,
        };
        let mut bytes = Vec::new();
        let mut keys: Vec<Key> = Vec::with_capacity(pairs.len() + 1);
        let mut items = Vec::new();
        // Sorted order is a depth-first walk of the implicit trie, so a stack of the
        // current ancestors yields each key's longest prefix among the keys.
        let mut stack: Vec<usize> = Vec::new();
        for (i, (key, mut list)) in pairs.into_iter().enumerate() {
            list.sort_unstable();
            list.dedup();
            while let Some(&top) = stack.last() {
                if key.starts_with(key_bytes(&bytes, &keys[top])) {
                    break;
                }
                stack.pop();
            }
            keys.push(Key {
                head: head(key.get(skip..).unwrap_or_default()),
                head2: head(key.get(skip + 8..).unwrap_or_default()),
                off: bytes.len() as u32,
                len: key.len() as u32,
                parent: stack.last().map_or(NONE, |&p| p as u32),
                items: items.len() as u32,
            });
            stack.push(i);
            bytes.extend_from_slice(&key);
            items.extend(list);
        }
        let min_rank = items.iter().map(|i| i.rank).min().unwrap_or(u32::MAX);
        let count = keys.len();
        // Sentinel so every key's items end where the next key's start.
        keys.push(Key {
            head: 0,
            head2: 0,
            off: bytes.len() as u32,
            len: 0,
            parent: NONE,
            items: items.len() as u32,
        });
        PathIndex {
            bytes: bytes.into_boxed_slice(),
            keys: keys.into_boxed_slice(),
            count,
            skip,
            items: items.into_boxed_slice(),
            min_rank,
        }
    }
}

/// The first 8 bytes of `s`, zero-padded, as a big-endian number: when the heads of two
/// strings differ they order the strings; when equal, the strings must be compared.
#[inline]
fn head(s: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = s.len().min(8);
    buf[..n].copy_from_slice(&s[..n]);
    u64::from_be_bytes(buf)
}

fn key_bytes<'a>(bytes: &'a [u8], key: &Key) -> &'a [u8] {
    bytes
        .get(key.off as usize..(key.off + key.len) as usize)
        .unwrap_or_default()
}

/// A key of a frozen index: its bytes in [`PathIndex::bytes`], its parent and where its
/// items start in [`PathIndex::items`].
#[derive(Debug, Clone, Copy)]
struct Key {
    /// [`head`] of the key after the bucket's common prefix.
    head: u64,
    /// [`head`] of the 8 bytes after that: keys sharing 8 bytes (`/api/v1/users/…`) are
    /// common, and comparing them here keeps a probe off the key bytes.
    head2: u64,
    off: u32,
    len: u32,
    parent: u32,
    items: u32,
}

/// The frozen index of one host bucket; keys and items each live in one allocation.
#[derive(Debug)]
pub(crate) struct PathIndex {
    /// All key bytes, concatenated in key order.
    bytes: Box<[u8]>,
    /// Keys in sorted order, plus one sentinel.
    keys: Box<[Key]>,
    /// Number of real keys.
    count: usize,
    /// Length of the prefix all keys share.
    skip: usize,
    /// Item lists, concatenated in key order.
    items: Box<[Item]>,
    /// Best (lowest) rank of any item, so a lookup can skip the whole bucket when it
    /// already holds a better match.
    min_rank: u32,
}

impl Default for PathIndex {
    fn default() -> Self {
        PathIndexBuilder::default().finish()
    }
}

impl PathIndex {
    /// Best rank filed in this bucket (`u32::MAX` when empty).
    #[inline]
    pub(crate) fn min_rank(&self) -> u32 {
        self.min_rank
    }

    /// Calls `visit` with the length and item list of every key that is a prefix of
    /// `path`, longest key first; stops early when `visit` returns `false`.
    #[inline]
    pub(crate) fn for_each_prefix(
        &self,
        path: &[u8],
        mut visit: impl FnMut(usize, &[Item]) -> bool,
    ) {
        let keys = self.keys.get(..self.count).unwrap_or_default();
        let after = match (path.get(..self.skip), keys.first()) {
            // Every key starts with the path's first `skip` bytes: compare the rest, by
            // the inline heads first, so most probes stay inside `keys`.
            (Some(common), Some(first))
                if key_bytes(&self.bytes, first).get(..self.skip) == Some(common) =>
            {
                let rest = path.get(self.skip..).unwrap_or_default();
                let h = (head(rest), head(rest.get(8..).unwrap_or_default()));
                keys.partition_point(|k| {
                    let kh = (k.head, k.head2);
                    kh < h
                        || (kh == h
                            && key_bytes(&self.bytes, k)
                                .get(self.skip..)
                                .unwrap_or_default()
                                <= rest)
                })
            }
            _ => keys.partition_point(|k| key_bytes(&self.bytes, k) <= path),
        };
        let Some(start) = after.checked_sub(1) else {
            return;
        };
        let pred = key_bytes(&self.bytes, &keys[start]);
        let lcp = pred.iter().zip(path).take_while(|(a, b)| a == b).count();
        let mut cur = start as u32;
        while cur != NONE {
            let i = cur as usize;
            let key = keys[i];
            // Ancestors of the predecessor are prefixes of the path exactly when they fit
            // inside the common prefix of the two.
            if key.len as usize <= lcp {
                let end = self.keys.get(i + 1).map_or(key.items, |k| k.items);
                let items = self
                    .items
                    .get(key.items as usize..end as usize)
                    .unwrap_or_default();
                if !visit(key.len as usize, items) {
                    return;
                }
            }
            cur = key.parent;
        }
    }

    /// Number of distinct keys (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn key_count(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(keys: &[&str]) -> PathIndex {
        let mut b = PathIndexBuilder::default();
        for (i, k) in keys.iter().enumerate() {
            b.insert(
                k.as_bytes(),
                Item {
                    rank: i as u32,
                    route: i as u32,
                    port: 0,
                    methods: 0,
                    flags: 0,
                },
            );
        }
        b.finish()
    }

    fn prefixes(idx: &PathIndex, path: &str) -> Vec<u32> {
        let mut out = Vec::new();
        idx.for_each_prefix(path.as_bytes(), |_, items| {
            out.extend(items.iter().map(|i| i.rank));
            true
        });
        out
    }

    #[test]
    fn finds_all_byte_prefixes_longest_first() {
        let keys = ["", "/", "/foo", "/foobar", "/fo", "/g", "/foo/x", "/foob"];
        let idx = index(&keys);
        assert_eq!(idx.key_count(), keys.len());
        // "/foobar/baz": "/foobar", "/foob", "/foo", "/fo", "/", "".
        assert_eq!(prefixes(&idx, "/foobar/baz"), vec![3, 7, 2, 4, 1, 0]);
        assert_eq!(prefixes(&idx, "/foo/y"), vec![2, 4, 1, 0]);
        assert_eq!(prefixes(&idx, "/g"), vec![5, 1, 0]);
        assert_eq!(prefixes(&idx, ""), vec![0]);
    }

    #[test]
    fn matches_brute_force() {
        let keys = [
            "/a", "/ab", "/abc", "/b", "/a/b", "/a/bc", "/abd", "/", "/b/a",
        ];
        let idx = index(&keys);
        for path in ["/a", "/abcd", "/abd/x", "/a/bcd", "/b/a/c", "/c", "/", "x"] {
            assert_eq!(
                prefixes(&idx, path),
                brute_force(&keys, path),
                "path {path}"
            );
        }
    }

    /// Indexes of the keys `path` starts with, longest first: what the index must return.
    fn brute_force(keys: &[&str], path: &str) -> Vec<u32> {
        let mut want: Vec<u32> = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| path.starts_with(*k))
            .map(|(i, _)| i as u32)
            .collect();
        want.sort_by_key(|&i| std::cmp::Reverse(keys[i as usize].len()));
        want
    }

    #[test]
    fn shared_prefix_and_heads_match_brute_force() {
        let keys = [
            "/api/v0/res1",
            "/api/v0/res12",
            "/api/v0/res123456789",
            "/api/v0/res12345678",
            "/api/v1/res1",
            "/api/v",
            "/api/v0/res1\0",
            "/api/v0/res1\0\0x",
        ];
        let idx = index(&keys);
        for path in [
            "/api/v0/res1",
            "/api/v0/res123456789/x",
            "/api/v0/res12345678",
            "/api/v0/res1\0\0xy",
            "/api/v0/res1\0",
            "/api/v1/res1/sub",
            "/api/",
            "/api/w",
            "/b",
            "",
        ] {
            assert_eq!(
                prefixes(&idx, path),
                brute_force(&keys, path),
                "path {path:?}"
            );
        }
    }

    #[test]
    fn empty_index_finds_nothing() {
        assert!(prefixes(&PathIndex::default(), "/x").is_empty());
    }
}
