//! Tests of [`PathIndex`]: every lookup is checked against a brute-force scan of the keys.

use super::*;

/// Neighbouring indexes in the same store, so offsets that leak across indexes show up.
fn index(keys: &[&str]) -> (PathStore, PathIndex) {
    let mut store = PathStore::default();
    let _before = filled(&mut store, b"before.example", &["/", "/a", "/zzz"]);
    let idx = filled(&mut store, b"host.example", keys);
    let _after = filled(&mut store, b"", &["", "/a/b", "/api/v0/res1"]);
    (store, idx)
}

fn filled(store: &mut PathStore, label: &[u8], keys: &[&str]) -> PathIndex {
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
    b.finish(label, store)
}

fn prefixes((store, idx): &(PathStore, PathIndex), path: &str) -> Vec<u32> {
    let mut out = Vec::new();
    idx.for_each_prefix(store, path.as_bytes(), |len, first, more| {
        for i in std::iter::once(first).chain(more) {
            assert_eq!(
                len, i.rank as usize,
                "rank {} visited as length {len}",
                i.rank
            );
            out.push(i.rank);
        }
        true
    });
    out
}

/// Like [`index`], but every key's rank is its length, so [`prefixes`] can check the
/// lengths it is given.
fn by_len(keys: &[&str]) -> (PathStore, PathIndex) {
    let mut store = PathStore::default();
    let _before = filled(&mut store, b"x", &["/q"]);
    let mut b = PathIndexBuilder::default();
    for k in keys {
        b.insert(
            k.as_bytes(),
            Item {
                rank: k.len() as u32,
                route: 0,
                port: 0,
                methods: 0,
                flags: 0,
            },
        );
    }
    let idx = b.finish(b"label", &mut store);
    (store, idx)
}

/// Lengths of the keys `path` starts with, longest first: what the index must return.
fn brute_force(keys: &[&str], path: &str) -> Vec<u32> {
    let mut want: Vec<u32> = keys
        .iter()
        .filter(|k| path.as_bytes().starts_with(k.as_bytes()))
        .map(|k| k.len() as u32)
        .collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    want.dedup();
    want
}

fn check(keys: &[&str], paths: &[&str]) {
    let idx = by_len(keys);
    assert_eq!(idx.1.key_count(), {
        let mut k = keys.to_vec();
        k.sort_unstable();
        k.dedup();
        k.len()
    });
    for path in paths {
        assert_eq!(
            prefixes(&idx, path),
            brute_force(keys, path),
            "keys {keys:?} path {path:?}"
        );
    }
}

#[test]
fn finds_all_byte_prefixes_longest_first() {
    let keys = ["", "/", "/foo", "/foobar", "/fo", "/g", "/foo/x", "/foob"];
    let idx = index(&keys);
    assert_eq!(idx.1.key_count(), keys.len());
    // "/foobar/baz": "/foobar", "/foob", "/foo", "/fo", "/", "".
    assert_eq!(prefixes_ranks(&idx, "/foobar/baz"), vec![3, 7, 2, 4, 1, 0]);
    assert_eq!(prefixes_ranks(&idx, "/foo/y"), vec![2, 4, 1, 0]);
    assert_eq!(prefixes_ranks(&idx, "/g"), vec![5, 1, 0]);
    assert_eq!(prefixes_ranks(&idx, ""), vec![0]);
}

/// Ranks in visiting order, without the length check of [`prefixes`].
fn prefixes_ranks((store, idx): &(PathStore, PathIndex), path: &str) -> Vec<u32> {
    let mut out = Vec::new();
    idx.for_each_prefix(store, path.as_bytes(), |_, first, more| {
        out.push(first.rank);
        out.extend(more.iter().map(|i| i.rank));
        true
    });
    out
}

#[test]
fn matches_brute_force() {
    check(
        &[
            "/a", "/ab", "/abc", "/b", "/a/b", "/a/bc", "/abd", "/", "/b/a",
        ],
        &[
            "/a", "/abcd", "/abd/x", "/a/bcd", "/b/a/c", "/c", "/", "x", "",
        ],
    );
}

#[test]
fn shared_prefix_and_heads_match_brute_force() {
    check(
        &[
            "/api/v0/res1",
            "/api/v0/res12",
            "/api/v0/res123456789",
            "/api/v0/res12345678",
            "/api/v1/res1",
            "/api/v",
            "/api/v0/res1\0",
            "/api/v0/res1\0\0x",
        ],
        &[
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
        ],
    );
}

/// Keys and paths that agree on all 16 inline bytes and differ after them, or end inside
/// them with NUL bytes that the zero padding also has.
#[test]
fn keys_past_the_inline_bytes() {
    let keys = [
        "/c/0123456789abcdef",
        "/c/0123456789abcdefXY",
        "/c/0123456789abcdefXYZ/long/tail",
        "/c/0123456789abcde",
        "/c/0123456789abcdeg",
        "/c/0123456789abcdef\0",
        "/c/01234567\0",
        "/c/01234567",
    ];
    let paths = [
        "/c/0123456789abcdef",
        "/c/0123456789abcdefX",
        "/c/0123456789abcdefXY",
        "/c/0123456789abcdefXYZ/long/tail/more",
        "/c/0123456789abcdefXYZ/long/tai",
        "/c/0123456789abcdef\0\0",
        "/c/0123456789abcdeg",
        "/c/01234567\0\0\0",
        "/c/01234567",
        "/c/0123456",
        "/c/",
    ];
    check(&keys, &paths);
}

#[test]
fn path_without_the_common_prefix_finds_nothing() {
    let idx = by_len(&["/api/v1/a", "/api/v2/b"]);
    assert_eq!(idx.1.skip, 6);
    assert!(prefixes(&idx, "/nothing").is_empty());
    assert!(prefixes(&idx, "/api/").is_empty());
    assert!(prefixes(&idx, "").is_empty());
    assert_eq!(prefixes(&idx, "/api/v1/a/b"), vec![9]);
}

#[test]
fn empty_index_finds_nothing() {
    let mut store = PathStore::default();
    let idx = PathIndexBuilder::default().finish(b"", &mut store);
    assert!(prefixes(&(store, idx), "/x").is_empty());
    assert_eq!(idx.min_rank(), u32::MAX);
}

#[test]
fn labels_stay_out_of_the_keys() {
    let (store, idx) = index(&["/x"]);
    assert_eq!(idx.label(&store), b"host.example");
    assert!(prefixes_ranks(&(store, idx), "host.example/x").is_empty());
}

/// Buckets past [`LINEAR_SCAN_MAX`] are searched by their fences; both ways must agree
/// with the brute force, on random keys over a tiny alphabet (so prefixes and ties are
/// common; duplicates shrink the key count, so the sizes are approximate).
#[test]
fn linear_and_binary_search_agree_with_brute_force() {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let alphabet = [b'/', b'a', b'b', 0];
    let mut word = |max: u64| -> String {
        let n = next(max + 1);
        (0..n)
            .map(|_| char::from(alphabet[next(alphabet.len() as u64) as usize]))
            .collect()
    };
    for round in 0..300 {
        let count = [
            1,
            5,
            LINEAR_SCAN_MAX,
            LINEAR_SCAN_MAX + 1,
            3 * BLOCK,
            3 * BLOCK + 1,
            200,
        ][round % 7];
        // A shared start on some rounds exercises the common prefix; long words the bytes
        // past the inline heads.
        let start = if round % 2 == 0 { "/api/v1/" } else { "" };
        let keys: Vec<String> = (0..count).map(|_| format!("{start}{}", word(24))).collect();
        let paths: Vec<String> = (0..60).map(|_| format!("{start}{}", word(30))).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        // Paths equal to keys and keys extended by a byte are the interesting cases.
        let extended: Vec<String> = keys.iter().map(|k| format!("{k}a")).collect();
        check(&keys, &paths);
        check(&keys, &keys);
        check(
            &keys,
            &extended.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
}

/// Items beyond a key's first live in the shared overflow array: each key must get its
/// own, in rank order, without duplicates, also with other indexes around.
#[test]
fn several_items_per_key_in_rank_order() {
    let item = |rank: u32| Item {
        rank,
        route: rank,
        port: 0,
        methods: 0,
        flags: 0,
    };
    let mut store = PathStore::default();
    let mut indexes = Vec::new();
    for n in 0..3u32 {
        let mut b = PathIndexBuilder::default();
        for rank in [7, 3, 9, 3] {
            b.insert(b"/a", item(rank + n * 100));
        }
        b.insert(b"/a/b", item(5 + n * 100));
        b.insert(b"/a/b/c", item(1 + n * 100));
        b.insert(b"/a/b/c", item(2 + n * 100));
        b.insert(b"/z", item(4 + n * 100));
        indexes.push(b.finish(format!("h{n}").as_bytes(), &mut store));
    }
    for (n, idx) in indexes.iter().enumerate() {
        let base = n as u32 * 100;
        assert_eq!(idx.min_rank(), base + 1);
        let mut seen = Vec::new();
        idx.for_each_prefix(&store, b"/a/b/c/d", |len, first, more| {
            let ranks: Vec<u32> = std::iter::once(first)
                .chain(more)
                .map(|i| i.rank - base)
                .collect();
            seen.push((len, ranks));
            true
        });
        assert_eq!(
            seen,
            vec![(6, vec![1, 2]), (4, vec![5]), (2, vec![3, 7, 9])],
            "index {n}"
        );
    }
}

/// Distinct keys at the sizes where the search changes shape (linear, fenced, a last
/// block that is partly filled or holds a single key).
#[test]
fn block_boundaries() {
    for n in [
        LINEAR_SCAN_MAX,
        LINEAR_SCAN_MAX + 1,
        4 * BLOCK,
        4 * BLOCK + 1,
        4 * BLOCK - 1,
        1000,
    ] {
        let keys: Vec<String> = (0..n).map(|i| format!("/k/{:04}", i * 3)).collect();
        let mut paths: Vec<String> = Vec::new();
        for i in 0..n * 3 + 2 {
            paths.push(format!("/k/{i:04}"));
            paths.push(format!("/k/{i:04}/x"));
        }
        paths.extend(["/k/", "/k", "/", "/l", "/k/9999"].map(String::from));
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        check(&keys, &paths);
    }
}
