//! API tokens and the authorisation of every request against the caller's organisation.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{now_unix, Role, Store, StoreResult, TokenRecord};

/// Every Fleetgate token starts with this, so leaked tokens are easy to scan for.
pub const TOKEN_PREFIX: &str = "fgt_";

/// A freshly minted token: the secret is shown once and never stored.
#[derive(Debug)]
pub struct IssuedToken {
    /// The stored record.
    pub record: TokenRecord,
    /// The bearer secret.
    pub secret: String,
}

/// SHA-256 of a token: tokens carry 160 random bits, so a fast hash is enough to make the
/// stored value useless to a database thief (no password-style stretching needed).
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Creates a token for the organisation and stores its hash.
pub async fn issue_token(
    store: &Store,
    organization_id: Uuid,
    name: &str,
    role: Role,
    expires_at: Option<i64>,
) -> StoreResult<IssuedToken> {
    let mut random = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut random);
    let secret = format!("{TOKEN_PREFIX}{}", hex::encode(random));
    let record = TokenRecord {
        id: Uuid::new_v4(),
        organization_id,
        name: name.to_string(),
        role,
        display_prefix: secret[..TOKEN_PREFIX.len() + 6].to_string(),
        created_at: now_unix(),
        expires_at,
    };
    store.insert_token(&record, &hash_token(&secret)).await?;
    Ok(IssuedToken { record, secret })
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's organisation: every resource access is scoped to it.
    pub organization_id: Uuid,
    /// What the caller may do.
    pub role: Role,
    /// Which token authenticated the request.
    pub token_id: Uuid,
}

impl Caller {
    /// Fails with 403 unless the caller may change resources.
    pub fn require_write(&self) -> Result<(), ApiError> {
        if self.role.can_write() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this token has the viewer role and cannot change resources".into(),
            ))
        }
    }

    /// Fails with 403 unless the caller is an operator.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.role == Role::Operator {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this operation needs an operator token".into(),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?;
        let value = header.to_str().map_err(|_| {
            ApiError::Unauthorized("the Authorization header is not valid text".into())
        })?;
        let secret = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be 'Bearer <token>'".into())
            })?
            .trim();
        let token = state
            .store
            .token_by_hash(&hash_token(secret))
            .await?
            .ok_or_else(|| ApiError::Unauthorized("the token is not valid".into()))?;
        if token.expires_at.is_some_and(|t| t <= now_unix()) {
            return Err(ApiError::Unauthorized("the token has expired".into()));
        }
        Ok(Caller {
            organization_id: token.organization_id,
            role: token.role,
            token_id: token.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_hex_and_not_the_secret() {
        let h = hash_token("fgt_abc");
        assert_eq!(h.len(), 64);
        assert_eq!(h, hash_token("fgt_abc"));
        assert_ne!(h, hash_token("fgt_abd"));
        assert!(!h.contains("abc"));
    }
}
