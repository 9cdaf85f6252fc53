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
    /// Id; nil until assigned.
    pub id: Uuid,
    /// The key; generated (32 hex characters) when a request leaves it out.
    pub key: String,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Seconds the key stays valid.
    pub ttl: Option<u32>,
}

/// Keys are secrets: Debug output (logs, panics) must not leak them.
impl std::fmt::Debug for KeyAuthCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAuthCredential")
            .field("consumer", &self.consumer)
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
