//! Consumers and their key-auth credentials.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entity::{Entity, EntityKind, EntityRef, FieldError, OnDelete, Reference};
use crate::validate::{check_tags, Errors};

/// A Kong consumer. Fields are declared in alphabetical order (canonical JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Consumer {
    /// An identifier from another system; unique.
    pub custom_id: Option<String>,
    /// Id; nil until assigned.
    pub id: Uuid,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Unique user name.
    pub username: Option<String>,
}

impl Entity for Consumer {
    const KIND: EntityKind = EntityKind::Consumer;

    fn id(&self) -> Uuid {
        self.id
    }

    fn set_id(&mut self, id: Uuid) {
        self.id = id;
    }

    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        let mut keys = Vec::new();
        if let Some(username) = &self.username {
            keys.push(("username", username.clone()));
        }
        if let Some(custom_id) = &self.custom_id {
            keys.push(("custom_id", custom_id.clone()));
        }
        keys
    }

    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.username.is_none() && self.custom_id.is_none() {
            errors.add(
                "@entity",
                "at least one of these fields must be non-empty: 'custom_id', 'username'",
            );
        }
        for (field, value) in [("username", &self.username), ("custom_id", &self.custom_id)] {
            if value.as_deref() == Some("") {
                errors.add(field, "must not be empty");
            }
        }
        check_tags(&mut errors, &self.tags);
        errors.finish()
    }
}

/// An API key of a consumer (Kong's `keyauth_credentials`). Fields in alphabetical order.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct KeyAuthCredential {
    /// The consumer owning the key. Required.
    pub consumer: Option<EntityRef>,
    /// When the key stops working, Unix seconds: `ttl` seconds after the credential was
    /// created. Set by the control plane when it stores the credential (see
    /// [`KeyAuthCredential::stamp_expiry`]); read-only for clients. Data planes refuse the
    /// key from this second on.
    pub expires_at: Option<i64>,
    /// Id; nil until assigned.
    pub id: Uuid,
    /// The key; generated (32 hex characters) when a request leaves it out.
    pub key: String,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Seconds the key stays valid after its creation (Kong's `ttl`); unset: forever.
    pub ttl: Option<u32>,
}

impl KeyAuthCredential {
    /// Sets `expires_at` of a stored credential body from its `ttl` and the time the
    /// credential was created (Unix seconds); removes it when there is no `ttl`. Kept on
    /// JSON bodies because that is what the control plane's store writes.
    pub fn stamp_expiry(body: &mut serde_json::Value, created_at: i64) {
        let Some(map) = body.as_object_mut() else {
            return;
        };
        match map.get("ttl").and_then(serde_json::Value::as_i64) {
            Some(ttl) => {
                map.insert(
                    "expires_at".into(),
                    serde_json::Value::from(created_at.saturating_add(ttl)),
                );
            }
            None => {
                map.remove("expires_at");
            }
        }
    }

    /// Whether the key is refused at `now` (Unix seconds): from `expires_at` on.
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// Keys are secrets: Debug output (logs, panics) must not leak them.
impl std::fmt::Debug for KeyAuthCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAuthCredential")
            .field("consumer", &self.consumer)
            .field("expires_at", &self.expires_at)
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .field("tags", &self.tags)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Entity for KeyAuthCredential {
    const KIND: EntityKind = EntityKind::KeyAuthCredential;

    fn id(&self) -> Uuid {
        self.id
    }

    fn set_id(&mut self, id: Uuid) {
        self.id = id;
    }

    fn unique_keys(&self) -> Vec<(&'static str, String)> {
        vec![("key", self.key.clone())]
    }

    fn references(&self) -> Vec<Reference> {
        Reference::from_ref(
            "consumer",
            EntityKind::Consumer,
            self.consumer.as_ref(),
            OnDelete::Cascade,
        )
        .into_iter()
        .collect()
    }

    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        if self.consumer.is_none() {
            errors.add("consumer", "required field missing");
        }
        if self.key.is_empty() {
            errors.add("key", "required field missing");
        } else if self
            .key
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            errors.add("key", "must not contain whitespace or control characters");
        }
        if self.ttl.is_some_and(|t| t == 0 || t > 100_000_000) {
            errors.add("ttl", "value should be between 1 and 100000000");
        }
        check_tags(&mut errors, &self.tags);
        errors.finish()
    }
}
