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

/// One candidate stored under a key: the entry's rank (its position in the router's
/// priority order, lower is better) and an optional port the request must carry
/// (from a route host such as `example.com:8080`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Item {
    /// Rank of the entry: index into the router's rank-ordered entries.
    pub(crate) rank: u32,
    /// Port required by the route host that put the entry into this bucket.
    pub(crate) port: Option<u16>,
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
        let mut keys = Vec::with_capacity(pairs.len());
        let mut items = Vec::with_capacity(pairs.len());
        for (key, mut list) in pairs {
            list.sort_unstable();
            list.dedup();
            keys.push(key.into_boxed_slice());
            items.push(list.into_boxed_slice());
        }
        // Sorted order is a depth-first walk of the implicit trie, so a stack of the
        // current ancestors yields each key's longest prefix among the keys.
        let mut parent = Vec::with_capacity(keys.len());
        let mut stack: Vec<usize> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            while let Some(&top) = stack.last() {
                if key.starts_with(&keys[top]) {
                    break;
                }
                stack.pop();
            }
            parent.push(stack.last().map_or(NONE, |&p| p as u32));
            stack.push(i);
        }
        let min_rank = items
            .iter()
            .filter_map(|list| list.first().map(|i| i.rank))
            .min()
            .unwrap_or(u32::MAX);
        PathIndex {
            keys,
            parent,
            items,
            min_rank,
        }
    }
}

/// The frozen index of one host bucket.
#[derive(Debug)]
pub(crate) struct PathIndex {
    keys: Vec<Box<[u8]>>,
    parent: Vec<u32>,
    items: Vec<Box<[Item]>>,
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

    /// Calls `visit` with the item list of every key that is a prefix of `path`, longest
    /// key first; stops early when `visit` returns `false`.
    #[inline]
    pub(crate) fn for_each_prefix(&self, path: &[u8], mut visit: impl FnMut(&[Item]) -> bool) {
        let after = self.keys.partition_point(|k| &**k <= path);
        let Some(start) = after.checked_sub(1) else {
            return;
        };
        let pred = &self.keys[start];
        let lcp = pred.iter().zip(path).take_while(|(a, b)| a == b).count();
        let mut cur = start as u32;
        while cur != NONE {
            let i = cur as usize;
            // Ancestors of the predecessor are prefixes of the path exactly when they fit
            // inside the common prefix of the two.
            if self.keys[i].len() <= lcp && !visit(&self.items[i]) {
                return;
            }
            cur = self.parent[i];
        }
    }

    /// Number of distinct keys (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
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
                    port: None,
                },
            );
        }
        b.finish()
    }

    fn prefixes(idx: &PathIndex, path: &str) -> Vec<u32> {
        let mut out = Vec::new();
        idx.for_each_prefix(path.as_bytes(), |items| {
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
            let mut want: Vec<u32> = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| path.starts_with(*k))
                .map(|(i, _)| i as u32)
                .collect();
            want.sort_by_key(|&i| std::cmp::Reverse(keys[i as usize].len()));
            assert_eq!(prefixes(&idx, path), want, "path {path}");
        }
    }

    #[test]
    fn empty_index_finds_nothing() {
        assert!(prefixes(&PathIndex::default(), "/x").is_empty());
    }
}
