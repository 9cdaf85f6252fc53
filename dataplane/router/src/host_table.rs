//! Host buckets by host name: a small open-addressing table of [`PathIndex`] headers.
//!
//! A general map would keep the name in its own allocation and point to the bucket, each
//! one more dependent cache miss per lookup. Here a slot holds the name's hash and the
//! bucket's header itself, and the name is checked in the store's compact names array
//! next to the bucket's common path prefix, which the lookup reads anyway.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use crate::path_index::{PathIndex, PathIndexBuilder, PathStore};

/// A slot: `hash` is `0` when empty, else the name's hash with the low bit set.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    hash: u64,
    bucket: PathIndex,
}

/// Host buckets, each an index labelled with its host name (or wildcard key).
#[derive(Debug)]
pub(crate) struct HostTable {
    /// Never more than half full, so every probe sequence reaches an empty slot.
    slots: Box<[Slot]>,
    /// Names come from the config and requests only look up, so a fast hash without DoS
    /// resistance is fine.
    hasher: RandomState,
}

impl HostTable {
    /// Freezes `builders` into `store`, keyed by their names.
    pub(crate) fn build(
        builders: impl IntoIterator<Item = (Vec<u8>, PathIndexBuilder)>,
        store: &mut PathStore,
    ) -> HostTable {
        let buckets: Vec<PathIndex> = builders
            .into_iter()
            .map(|(name, b)| b.finish(&name, store))
            .collect();
        let len = (buckets.len() * 2).next_power_of_two().max(2);
        let mut slots = vec![Slot::default(); len].into_boxed_slice();
        let hasher = RandomState::default();
        let mask = len - 1;
        for bucket in buckets {
            let hash = hasher.hash_one(bucket.label(store)) | 1;
            let mut i = hash as usize & mask;
            while slots[i].hash != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = Slot { hash, bucket };
        }
        HostTable { slots, hasher }
    }

    /// The bucket labelled `name`.
    #[inline]
    pub(crate) fn get(&self, store: &PathStore, name: &[u8]) -> Option<&PathIndex> {
        let hash = self.hasher.hash_one(name) | 1;
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots.get(i)?;
            if slot.hash == 0 {
                return None;
            }
            if slot.hash == hash && slot.bucket.label(store) == name {
                return Some(&slot.bucket);
            }
            i = (i + 1) & mask;
        }
    }

    /// Every bucket, in no particular order.
    pub(crate) fn buckets(&self) -> impl Iterator<Item = &PathIndex> {
        self.slots.iter().filter(|s| s.hash != 0).map(|s| &s.bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path_index::Item;

    fn table(names: &[String]) -> (PathStore, HostTable) {
        let mut store = PathStore::default();
        let builders = names.iter().enumerate().map(|(i, n)| {
            let mut b = PathIndexBuilder::default();
            b.insert(
                b"/",
                Item {
                    rank: i as u32,
                    route: i as u32,
                    port: 0,
                    methods: 0,
                    flags: 0,
                },
            );
            (n.as_bytes().to_vec(), b)
        });
        let t = HostTable::build(builders.collect::<Vec<_>>(), &mut store);
        (store, t)
    }

    #[test]
    fn finds_every_name_and_nothing_else() {
        let names: Vec<String> = (0..5000).map(|i| format!("svc{i}.example.com")).collect();
        let (store, t) = table(&names);
        assert_eq!(t.buckets().count(), names.len());
        for (i, n) in names.iter().enumerate() {
            let b = t
                .get(&store, n.as_bytes())
                .unwrap_or_else(|| panic!("{n} not found"));
            assert_eq!(b.min_rank(), i as u32, "{n}");
        }
        for miss in [
            "svc5000.example.com",
            "svc1.example.co",
            "",
            "SVC1.example.com",
        ] {
            assert!(t.get(&store, miss.as_bytes()).is_none(), "{miss}");
        }
    }

    #[test]
    fn empty_names_and_tables() {
        let (store, t) = table(&[]);
        assert!(t.get(&store, b"a").is_none());
        assert!(t.get(&store, b"").is_none());
        assert_eq!(t.buckets().count(), 0);
        let (store, t) = table(&[String::new(), "a".into()]);
        assert_eq!(t.get(&store, b"").map(PathIndex::min_rank), Some(0));
        assert_eq!(t.get(&store, b"a").map(PathIndex::min_rank), Some(1));
    }
}
