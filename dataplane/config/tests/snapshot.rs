//! GatewayConfig: canonical JSON, hash and cross-entity validation.

use fleetgate_config::{
    parse_entity, EntityRef, GatewayConfig, Plugin, Route, Service, Uuid, EMPTY_CONFIG_HASH,
};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::json;

fn service(n: u128) -> Service {
    let mut s: Service =
        parse_entity(&json!({"name": format!("svc-{n}"), "host": "h"})).expect("valid");
    s.id = Uuid::from_u128(n);
    s
}

fn route(n: u128, service: u128) -> Route {
    let mut r: Route = parse_entity(&json!({
        "name": format!("route-{n}"),
        "paths": ["/x"],
        "headers": {"z-b": ["1"], "a-b": ["2"]},
    }))
    .expect("valid");
    // Free-form JSON with keys out of order must still be written sorted.
    r.sources = Some(vec![json!({"port": 1, "ip": "10.0.0.1"})]);
    r.id = Uuid::from_u128(n);
    r.service = Some(EntityRef::new(Uuid::from_u128(service)));
    r
}

fn plugin(n: u128) -> Plugin {
    // Keys deliberately out of order.
    let mut p: Plugin =
        parse_entity(&json!({"name": "cors", "config": {"origins": ["*"], "credentials": true}}))
            .expect("valid");
    p.id = Uuid::from_u128(n);
    p
}

fn sample() -> GatewayConfig {
    GatewayConfig {
        services: vec![service(1), service(2)],
        routes: vec![route(10, 1), route(11, 2)],
        plugins: vec![plugin(20)],
        ..GatewayConfig::default()
    }
}

#[test]
fn empty_config_has_the_well_known_hash() {
    let cfg = GatewayConfig::default();
    assert!(cfg.is_empty());
    assert_eq!(cfg.hash().0, EMPTY_CONFIG_HASH);
    assert!(cfg.validate().is_ok());
}

#[test]
fn hash_is_independent_of_insertion_order() {
    let a = sample();
    let mut b = sample();
    b.services.reverse();
    b.routes.reverse();
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.canonical_json(), b.canonical_json());
    assert_eq!(a.hash().0.len(), 32);
    assert!(a
        .hash()
        .0
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(a.hash().to_string(), a.hash().0);
    assert_eq!(a.canonical_json_and_hash(), (a.canonical_json(), a.hash()));
    b.sort_canonical();
    assert_eq!(b.services[0].id, Uuid::from_u128(1));
}

#[test]
fn a_single_field_change_changes_the_hash() {
    let a = sample();
    let mut b = sample();
    b.routes[1].strip_path = false;
    assert_ne!(a.hash(), b.hash());
    let mut c = sample();
    c.plugins[0].config["credentials"] = json!(false);
    assert_ne!(a.hash(), c.hash());
}

/// JSON that remembers the order object keys were written in.
enum Ordered {
    Leaf,
    Seq(Vec<Ordered>),
    Map(Vec<(String, Ordered)>),
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("json")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Leaf)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(Ordered::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// Counts objects, panicking on the first whose keys are not strictly sorted.
fn assert_sorted(value: &Ordered, path: &str) -> usize {
    match value {
        Ordered::Leaf => 0,
        Ordered::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| assert_sorted(v, &format!("{path}[{i}]")))
            .sum(),
        Ordered::Map(entries) => {
            for pair in entries.windows(2) {
                assert!(
                    pair[0].0 < pair[1].0,
                    "keys not sorted at {path}: {} before {}",
                    pair[0].0,
                    pair[1].0
                );
            }
            1 + entries
                .iter()
                .map(|(k, v)| assert_sorted(v, &format!("{path}.{k}")))
                .sum::<usize>()
        }
    }
}

#[test]
fn canonical_json_has_sorted_keys_at_every_level() {
    let mut cfg = sample();
    let mut up: fleetgate_config::Upstream = parse_entity(&json!({"name": "u"})).expect("valid");
    up.id = Uuid::from_u128(30);
    cfg.upstreams.push(up);
    let bytes = cfg.canonical_json();
    assert!(!bytes.contains(&b' ') || !String::from_utf8_lossy(&bytes).contains(": "));
    let ordered: Ordered = serde_json::from_slice(&bytes).expect("json");
    // Top level, entities, healthchecks, plugin config, route headers: many objects.
    assert!(assert_sorted(&ordered, "$") > 15);
    // The canonical bytes equal a sorted-key re-serialisation.
    let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(serde_json::to_vec(&value).expect("json"), bytes);
}

#[test]
fn canonical_json_round_trips_through_serde() {
    let cfg = sample();
    let back: GatewayConfig = serde_json::from_slice(&cfg.canonical_json()).expect("decodes");
    let mut sorted = cfg.clone();
    sorted.sort_canonical();
    assert_eq!(back, sorted);
}

#[test]
fn validate_checks_references_ids_and_unique_keys() {
    assert!(sample().validate().is_ok());
    let mut cfg = sample();
    cfg.routes[1].service = Some(EntityRef::new(Uuid::from_u128(99)));
    let errs = cfg.validate().expect_err("dangling");
    assert_eq!(errs[0].field, "routes[1].service");
    let mut cfg = sample();
    cfg.services[1].name = Some("svc-1".into());
    let errs = cfg.validate().expect_err("duplicate name");
    assert_eq!(errs[0].field, "services[1].name");
    let mut cfg = sample();
    cfg.routes[1].id = cfg.routes[0].id;
    let errs = cfg.validate().expect_err("duplicate id");
    assert_eq!(errs[0].field, "routes[1].id");
    let mut cfg = sample();
    cfg.services[0].port = 80;
    cfg.services[0].retries = 40000;
    let errs = cfg.validate().expect_err("own validation");
    assert_eq!(errs[0].field, "services[0].retries");
}
