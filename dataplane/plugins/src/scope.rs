//! Kong's plugin scoping: per plugin name, a map from (route, service, consumer) scope to the
//! compiled instance, looked up in Kong's precedence order.

use std::collections::HashMap;

use fleetgate_config::{Plugin, Protocol};
use uuid::Uuid;

/// The scope a plugin instance is attached to; `None` means "any".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ScopeKey {
    pub route: Option<Uuid>,
    pub service: Option<Uuid>,
    pub consumer: Option<Uuid>,
}

impl ScopeKey {
    /// The scope of a configured plugin.
    pub fn of(plugin: &Plugin) -> Self {
        Self {
            route: plugin.route.map(|r| r.id),
            service: plugin.service.map(|r| r.id),
            consumer: plugin.consumer.map(|r| r.id),
        }
    }

    /// Index of this key's shape (which parts are set) in a bit set of 8 shapes.
    fn shape(&self) -> u8 {
        shape(
            self.route.is_some(),
            self.service.is_some(),
            self.consumer.is_some(),
        )
    }
}

const fn shape(route: bool, service: bool, consumer: bool) -> u8 {
    (route as u8) | ((service as u8) << 1) | ((consumer as u8) << 2)
}

/// Kong's precedence (plugins_iterator `lookup_cfg`), most specific first, as
/// (route, service, consumer) shapes.
const PRECEDENCE: [(bool, bool, bool); 8] = [
    (true, true, true),
    (true, false, true),
    (false, true, true),
    (true, true, false),
    (false, false, true),
    (true, false, false),
    (false, true, false),
    (false, false, false),
];

/// A compiled plugin instance with what the engine needs around it.
#[derive(Debug)]
pub(crate) struct Instance<T> {
    /// The plugin entity's id.
    pub id: Uuid,
    on_http: bool,
    on_https: bool,
    /// The compiled plugin.
    pub plugin: T,
}

impl<T> Instance<T> {
    /// Wraps a compiled plugin with the entity's id and protocols.
    pub fn new(entity: &Plugin, plugin: T) -> Self {
        Self {
            id: entity.id,
            on_http: entity.protocols.contains(&Protocol::Http),
            on_https: entity.protocols.contains(&Protocol::Https),
            plugin,
        }
    }

    /// Whether the instance runs for a request of this protocol.
    pub fn runs_on(&self, https: bool) -> bool {
        if https {
            self.on_https
        } else {
            self.on_http
        }
    }
}

/// All instances of one plugin name, by scope.
#[derive(Debug)]
pub(crate) struct Scoped<T> {
    map: HashMap<ScopeKey, Instance<T>>,
    /// Bit set of the shapes present, so a lookup hashes only keys that can exist (most
    /// configs use one or two shapes; the common request then costs one lookup).
    shapes: u8,
}

impl<T> Default for Scoped<T> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            shapes: 0,
        }
    }
}

impl<T> Scoped<T> {
    /// No instance on any scope.
    pub fn is_empty(&self) -> bool {
        self.shapes == 0
    }

    /// Adds an instance; returns the id of the instance already on that scope, if any.
    pub fn insert(&mut self, key: ScopeKey, instance: Instance<T>) -> Result<(), Uuid> {
        if let Some(existing) = self.map.get(&key) {
            return Err(existing.id);
        }
        self.shapes |= 1 << key.shape();
        self.map.insert(key, instance);
        Ok(())
    }

    /// The most specific instance for a request, by Kong's precedence. Protocols are not
    /// considered here: like Kong, the resolved instance is the one that runs or not.
    pub fn lookup(
        &self,
        route: Option<Uuid>,
        service: Option<Uuid>,
        consumer: Option<Uuid>,
    ) -> Option<&Instance<T>> {
        if self.shapes == 0 {
            return None;
        }
        for (r, s, c) in PRECEDENCE {
            if self.shapes & (1 << shape(r, s, c)) == 0 {
                continue;
            }
            let Some(key) = pick(r, route)
                .zip(pick(s, service))
                .zip(pick(c, consumer))
                .map(|((route, service), consumer)| ScopeKey {
                    route,
                    service,
                    consumer,
                })
            else {
                continue;
            };
            if let Some(instance) = self.map.get(&key) {
                return Some(instance);
            }
        }
        None
    }
}

/// For one part of a shape: `Some(None)` when the shape leaves it unset, `Some(Some(id))`
/// when it needs the id and the request has one, `None` when the shape cannot apply.
fn pick(wanted: bool, id: Option<Uuid>) -> Option<Option<Uuid>> {
    if wanted {
        id.map(Some)
    } else {
        Some(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(route: Option<Uuid>, service: Option<Uuid>, consumer: Option<Uuid>) -> ScopeKey {
        ScopeKey {
            route,
            service,
            consumer,
        }
    }

    fn inst(n: u8) -> Instance<u8> {
        Instance {
            id: Uuid::from_u128(n as u128),
            on_http: true,
            on_https: false,
            plugin: n,
        }
    }

    #[test]
    fn precedence_walks_kong_order() {
        let (r, s, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let keys = [
            key(Some(r), Some(s), Some(c)),
            key(Some(r), None, Some(c)),
            key(None, Some(s), Some(c)),
            key(Some(r), Some(s), None),
            key(None, None, Some(c)),
            key(Some(r), None, None),
            key(None, Some(s), None),
            key(None, None, None),
        ];
        // Removing the winner each time must reveal the next in Kong's order.
        for start in 0..keys.len() {
            let mut scoped = Scoped::default();
            for (i, k) in keys.iter().enumerate().skip(start) {
                assert!(scoped.insert(*k, inst(i as u8)).is_ok());
            }
            let got = scoped.lookup(Some(r), Some(s), Some(c)).map(|i| i.plugin);
            assert_eq!(got, Some(start as u8));
        }
    }

    #[test]
    fn missing_ids_skip_shapes() {
        let (r, c) = (Uuid::from_u128(1), Uuid::from_u128(3));
        let mut scoped = Scoped::default();
        assert!(scoped.insert(key(Some(r), None, Some(c)), inst(1)).is_ok());
        assert!(scoped.insert(key(None, None, None), inst(2)).is_ok());
        assert_eq!(
            scoped.lookup(Some(r), None, None).map(|i| i.plugin),
            Some(2)
        );
        assert_eq!(
            scoped.lookup(Some(r), None, Some(c)).map(|i| i.plugin),
            Some(1)
        );
        assert_eq!(
            scoped.lookup(None, None, Some(c)).map(|i| i.plugin),
            Some(2)
        );
    }

    #[test]
    fn duplicate_scope_is_refused() {
        let mut scoped = Scoped::default();
        assert!(scoped.insert(key(None, None, None), inst(1)).is_ok());
        assert_eq!(
            scoped.insert(key(None, None, None), inst(2)),
            Err(Uuid::from_u128(1))
        );
        assert!(inst(1).runs_on(false) && !inst(1).runs_on(true));
    }
}
