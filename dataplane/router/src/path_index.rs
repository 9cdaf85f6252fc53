//! A set of byte-string keys answering "which keys are prefixes of this path?".
//!
//! Kong's prefix paths are plain byte prefixes (`/foo` matches `/foobar`), so a
//! segment-aware trie would be wrong. Instead the keys are kept sorted, and every key
//! remembers its longest proper prefix that is also a key (its "parent"). Every key that
//! is a prefix of a path `P` is a prefix of the predecessor `s` of `P` in sorted order
//! (any string between a prefix `q` of `P` and `P` itself starts with `q`), so one search
//! plus a walk up `s`'s parent chain finds them all, longest first.
//!
//! # Layout
//! With 100k routes a lookup costs its chain of dependent cache misses, not its
//! instructions, so the layout keeps that chain short. All indexes of a router share a
//! few arrays (a [`PathStore`]) rather than allocating per host bucket, and a
//! [`PathIndex`] is a small header of offsets into them. A key holds what a lookup needs
//! in the common case: the first 16 bytes after the bucket's common prefix, as two
//! big-endian words that order the keys and give the predecessor's common prefix with
//! the path (key bytes are read only for ties and longer keys), and its best item. A
//! short bucket is scanned linearly: its key lines then load in parallel instead of one
//! per binary-search step. So a lookup that hits reads the bucket's names (small, likely
//! cached) and its keys, and nothing else.

use std::collections::HashMap;

use foldhash::fast::RandomState;

/// Marks "no parent" in [`Key::parent`].
const NONE: u32 = u32::MAX;

/// Buckets with at most this many keys are scanned linearly (see the module docs); 32
/// keys are 24 cache lines, all requested at once.
pub(crate) const LINEAR_SCAN_MAX: usize = 32;

/// Larger buckets are cut into blocks of this many keys. The heads of each block's first
/// key (its fence) form a small array that a binary search walks, mostly in cache, before
/// one block is scanned linearly: a bucket of 10k keys then costs about what a small one
/// does, instead of a dozen dependent misses of a binary search over the keys.
pub(crate) const BLOCK: usize = 16;

/// Bytes of a key (after the bucket's common prefix) held inline in [`Key`].
const INLINE: usize = 16;

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

/// The arrays behind every [`PathIndex`] of one router.
#[derive(Debug, Default)]
pub(crate) struct PathStore {
    /// Per index: its label, then its keys' common prefix. Small (one host name and a
    /// path start per bucket), so it tends to stay cached.
    names: Vec<u8>,
    /// Per index: its keys in sorted order, then a sentinel.
    keys: Vec<Key>,
    /// Per index: each key's bytes after the common prefix, concatenated in key order;
    /// read only for ties and keys longer than the inline heads.
    rests: Vec<u8>,
    /// Per index: each key's items after its first, concatenated in key order.
    more: Vec<Item>,
    /// Per index with more than [`LINEAR_SCAN_MAX`] keys: the heads of every
    /// [`BLOCK`]th key.
    fences: Vec<(u64, u64)>,
}

impl PathStore {
    /// Releases the spare capacity left by building.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        self.keys.shrink_to_fit();
        self.rests.shrink_to_fit();
        self.more.shrink_to_fit();
        self.fences.shrink_to_fit();
    }
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

    /// Freezes the builder into `store`: keys sorted, parents linked, every item list in
    /// rank order (so a lookup can stop at the first item that cannot beat the best match
    /// so far). `label` is kept with the index (a host bucket's host name), next to the
    /// common prefix a lookup reads first.
    pub(crate) fn finish(self, label: &[u8], store: &mut PathStore) -> PathIndex {
        let mut pairs: Vec<(Vec<u8>, Vec<Item>)> = self.items.into_iter().collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // The common prefix of all keys is that of the first and last in sorted order.
        let (common, skip) = match (pairs.first(), pairs.last()) {
            (Some(a), Some(b)) => {
                let n = a.0.iter().zip(&b.0).take_while(|(x, y)| x == y).count();
                (a.0.get(..n).unwrap_or_default(), n)
            }
            _ => (&[][..], 0),
        };
        let index = PathIndex {
            names: store.names.len(),
            keys: store.keys.len(),
            rests: store.rests.len(),
            more: store.more.len(),
            fences: store.fences.len(),
            count: pairs.len() as u32,
            label_len: label.len() as u32,
            skip: skip as u32,
            min_rank: u32::MAX,
        };
        store.names.extend_from_slice(label);
        store.names.extend_from_slice(common);
        let mut min_rank = u32::MAX;
        // Sorted order is a depth-first walk of the implicit trie, so a stack of the
        // current ancestors yields each key's longest prefix among the keys.
        let mut stack: Vec<usize> = Vec::new();
        for i in 0..pairs.len() {
            let key = &pairs[i].0;
            while let Some(&top) = stack.last() {
                if key.starts_with(&pairs[top].0) {
                    break;
                }
                stack.pop();
            }
            let rest = key.get(skip..).unwrap_or_default();
            let (head, head2) = heads(rest);
            let parent = stack.last().map_or(NONE, |&p| p as u32);
            let off = (store.rests.len() - index.rests) as u32;
            let more = (store.more.len() - index.more) as u32;
            let len = key.len() as u32;
            stack.push(i);
            store.rests.extend_from_slice(rest);
            let list = &mut pairs[i].1;
            list.sort_unstable();
            list.dedup();
            // A key exists only with an item, so `first` is always a real one.
            let first = list.first().copied().unwrap_or(Item::NONE);
            min_rank = min_rank.min(first.rank);
            store
                .more
                .extend_from_slice(list.get(1..).unwrap_or_default());
            store.keys.push(Key {
                head,
                head2,
                first,
                off,
                len,
                parent,
                more,
            });
        }
        if pairs.len() > LINEAR_SCAN_MAX {
            let keys = store.keys.get(index.keys..).unwrap_or_default();
            store
                .fences
                .extend(keys.iter().step_by(BLOCK).map(Key::heads));
        }
        // Sentinel so every key's bytes and further items end where the next key's start.
        store.keys.push(Key {
            head: 0,
            head2: 0,
            first: Item::NONE,
            off: (store.rests.len() - index.rests) as u32,
            len: 0,
            parent: NONE,
            more: (store.more.len() - index.more) as u32,
        });
        PathIndex { min_rank, ..index }
    }
}

/// The first 16 bytes of `s`, zero-padded, as two big-endian numbers: when the heads of
/// two strings differ they order the strings; when equal, the strings must be compared.
#[inline]
fn heads(s: &[u8]) -> (u64, u64) {
    (word(s), word(s.get(8..).unwrap_or_default()))
}

/// The first 8 bytes of `s`, zero-padded, as a big-endian number. Whole words are loaded
/// directly: a copy into a padded buffer compiles to a `memcpy` call whose byte stores
/// then stall the word load.
#[inline]
fn word(s: &[u8]) -> u64 {
    match s.first_chunk::<8>() {
        Some(w) => u64::from_be_bytes(*w),
        None => s
            .iter()
            .enumerate()
            .fold(0, |w, (i, &b)| w | u64::from(b) << (56 - 8 * i)),
    }
}

/// Length of the common prefix of two zero-padded 16-byte heads.
#[inline]
fn heads_common_len(a: (u64, u64), b: (u64, u64)) -> usize {
    let x = a.0 ^ b.0;
    if x != 0 {
        return x.leading_zeros() as usize / 8;
    }
    let x = a.1 ^ b.1;
    if x != 0 {
        return 8 + x.leading_zeros() as usize / 8;
    }
    INLINE
}

/// The bytes of `s` past the inline heads.
#[inline]
fn past_inline(s: &[u8]) -> &[u8] {
    s.get(INLINE..).unwrap_or_default()
}

/// A key of an index with everything a lookup reads in the common case: its heads, its
/// full length, its parent and its first (best-ranked) item, which is usually its only
/// one. Offsets are relative to the index's start in the store's arrays. 48 bytes.
#[derive(Debug, Clone, Copy)]
struct Key {
    /// Bytes 0..8 after the index's common prefix, see [`heads`].
    head: u64,
    /// Bytes 8..16 after it: keys sharing 8 bytes (`/api/v1/users/…`) are common, and
    /// comparing them here keeps a lookup off the key bytes.
    head2: u64,
    first: Item,
    /// Start of the key's bytes after the common prefix in [`PathStore::rests`].
    off: u32,
    /// Full length of the key.
    len: u32,
    parent: u32,
    /// Start of the key's further items in [`PathStore::more`].
    more: u32,
}

impl Key {
    #[inline]
    fn heads(&self) -> (u64, u64) {
        (self.head, self.head2)
    }
}

impl Item {
    /// Placeholder in the sentinel key, never visited; its rank never beats a match.
    const NONE: Item = Item {
        rank: u32::MAX,
        route: u32::MAX,
        port: 0,
        methods: 0,
        flags: 0,
    };
}

/// One index (one host bucket): where its parts start in the router's [`PathStore`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PathIndex {
    /// Start of the label and common prefix in [`PathStore::names`].
    names: usize,
    /// Start of the keys in [`PathStore::keys`].
    keys: usize,
    /// Start in [`PathStore::rests`].
    rests: usize,
    /// Start in [`PathStore::more`].
    more: usize,
    /// Start in [`PathStore::fences`] (when there are more than [`LINEAR_SCAN_MAX`] keys).
    fences: usize,
    /// Number of keys (a sentinel follows them).
    count: u32,
    label_len: u32,
    /// Length of the prefix all keys share (stored after the label).
    skip: u32,
    /// Best (lowest) rank of any item, so a lookup can skip the whole bucket when it
    /// already holds a better match.
    min_rank: u32,
}

impl PathIndex {
    /// Best rank filed in this index (`u32::MAX` when empty).
    #[inline]
    pub(crate) fn min_rank(&self) -> u32 {
        self.min_rank
    }

    /// The label given to [`PathIndexBuilder::finish`].
    #[inline]
    pub(crate) fn label<'s>(&self, store: &'s PathStore) -> &'s [u8] {
        store
            .names
            .get(self.names..self.names + self.label_len as usize)
            .unwrap_or_default()
    }

    /// Calls `visit` with the length, first item and further items of every key that is
    /// a prefix of `path`, longest key first (a key's items are in rank order); stops
    /// early when `visit` returns `false`.
    #[inline]
    pub(crate) fn for_each_prefix(
        &self,
        store: &PathStore,
        path: &[u8],
        mut visit: impl FnMut(usize, &Item, &[Item]) -> bool,
    ) {
        let count = self.count as usize;
        // The keys plus the sentinel, whose offsets end the last key's bytes and items.
        let Some((sentinel, keys)) = store
            .keys
            .get(self.keys..self.keys + count + 1)
            .and_then(<[Key]>::split_last)
        else {
            return;
        };
        let skip = self.skip as usize;
        let common_at = self.names + self.label_len as usize;
        // Every key starts with the common prefix, so a path that does not has no keys
        // among its prefixes.
        let common = store
            .names
            .get(common_at..common_at + skip)
            .unwrap_or_default();
        let Some(rest) = path.strip_prefix(common) else {
            return;
        };
        let h = heads(rest);
        let rests = store
            .rests
            .get(self.rests..self.rests + sentinel.off as usize)
            .unwrap_or_default();
        // A key's bytes after the common prefix.
        let key_rest = |k: &Key| {
            let off = k.off as usize;
            let len = (k.len as usize).saturating_sub(skip);
            rests.get(off..off + len).unwrap_or_default()
        };
        // Whether key <= path (both after the common prefix), by the heads when they differ.
        let at_most = |k: &Key| {
            let kh = k.heads();
            kh < h || (kh == h && key_rest(k) <= rest)
        };
        // The predicate is monotone over the sorted keys, so counting where it holds in a
        // run of keys finds the same position as a binary search would.
        let count_at_most = |run: &[Key]| {
            // Without branches on the comparisons (their outcome flips once per run, a
            // mispredict each lookup); equal heads (rare) need the key bytes.
            let (below, ties) = run.iter().fold((0, false), |(n, ties), k| {
                let lt = (k.head < h.0) | ((k.head == h.0) & (k.head2 < h.1));
                let eq = (k.head == h.0) & (k.head2 == h.1);
                (n + usize::from(lt), ties | eq)
            });
            if ties {
                run.iter().filter(|k| at_most(k)).count()
            } else {
                below
            }
        };
        let after = if keys.len() <= LINEAR_SCAN_MAX {
            count_at_most(keys)
        } else {
            let fences = store
                .fences
                .get(self.fences..self.fences + keys.len().div_ceil(BLOCK))
                .unwrap_or_default();
            // Fences past the path order like their keys; equal heads need the key bytes.
            let (mut lo, mut hi) = (0, fences.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let f = fences[mid];
                let le = f < h || (f == h && keys.get(mid * BLOCK).is_some_and(&at_most));
                if le {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            match lo.checked_sub(1) {
                None => 0,
                Some(block) => {
                    let from = block * BLOCK;
                    let to = (from + BLOCK).min(keys.len());
                    from + count_at_most(keys.get(from..to).unwrap_or_default())
                }
            }
        };
        let Some(start) = after.checked_sub(1) else {
            return;
        };
        let Some(pred) = keys.get(start) else {
            return;
        };
        // Common prefix of the predecessor and the path: the heads give it unless both go
        // on past them equal.
        let pred_len = (pred.len as usize).saturating_sub(skip);
        let mut lcp = heads_common_len(pred.heads(), h);
        if lcp == INLINE && pred_len > INLINE && rest.len() > INLINE {
            lcp += past_inline(key_rest(pred))
                .iter()
                .zip(past_inline(rest))
                .take_while(|(a, b)| a == b)
                .count();
        }
        // The heads are zero-padded: bytes past either end do not count.
        let lcp = skip + lcp.min(pred_len).min(rest.len());
        let more = store.more.get(self.more..).unwrap_or_default();
        let mut cur = start as u32;
        while cur != NONE {
            let i = cur as usize;
            let Some(key) = keys.get(i) else {
                return;
            };
            // Ancestors of the predecessor are prefixes of the path exactly when they fit
            // inside the common prefix of the two.
            if key.len as usize <= lcp {
                let end = keys.get(i + 1).unwrap_or(sentinel).more;
                let others = more
                    .get(key.more as usize..end as usize)
                    .unwrap_or_default();
                if !visit(key.len as usize, &key.first, others) {
                    return;
                }
            }
            cur = key.parent;
        }
    }

    /// Number of distinct keys (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn key_count(&self) -> usize {
        self.count as usize
    }
}

#[cfg(test)]
#[path = "path_index_tests.rs"]
mod tests;
