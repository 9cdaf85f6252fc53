//! The signed license a control plane pushes to its data planes (docs/architecture.md).
//!
//! Blob: `fgl1.<base64url(payload JSON)>.<base64url(Ed25519 signature of the payload bytes)>`.
//! The payload carries the signer's public key, so a node can check a blob it reads back from
//! its own disk without another round trip; the link it arrived on (mutual TLS to the control
//! plane) is what makes the key trustworthy in the first place.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const PREFIX: &str = "fgl1";

/// What a license says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseClaims {
    /// Unique per issued license.
    pub license_id: Uuid,
    /// The organisation it is for.
    pub organization_id: Uuid,
    /// Issue time, Unix seconds.
    pub issued_at: i64,
    /// Expiry, Unix seconds: after it the data plane stops proxying.
    pub expires_at: i64,
}

impl LicenseClaims {
    /// Whether the license has run out at `now_unix`.
    pub fn is_expired(&self, now_unix: i64) -> bool {
        now_unix >= self.expires_at
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    #[serde(flatten)]
    claims: LicenseClaims,
    public_key: String,
}

/// Why a blob is not a valid license.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LicenseError {
    /// Not `fgl1.<payload>.<signature>`.
    #[error("license is not in the fgl1.<payload>.<signature> format")]
    Format,
    /// A part is not base64url or the payload is not the expected JSON.
    #[error("license {part} is malformed: {reason}")]
    Malformed {
        /// `payload`, `signature` or `public key`.
        part: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The signature does not match the payload and key.
    #[error("license signature does not verify")]
    BadSignature,
    /// Signed by another key than the one expected.
    #[error("license is signed by an unexpected key")]
    UnexpectedKey,
}

/// The control plane's license signing key.
pub struct LicenseSigner {
    key: SigningKey,
}

impl std::fmt::Debug for LicenseSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret half.
        f.debug_struct("LicenseSigner")
            .field("public_key", &self.public_key_b64())
            .finish()
    }
}

impl LicenseSigner {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self::from_seed(&rand::random::<[u8; 32]>())
    }

    /// The key for a stored 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The 32-byte seed, for storing the key.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key, base64url.
    pub fn public_key_b64(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())
    }

    /// Signs `claims` into a blob.
    pub fn sign(&self, claims: &LicenseClaims) -> String {
        let payload = Payload {
            claims: claims.clone(),
            public_key: self.public_key_b64(),
        };
        // Serialising a struct of plain fields cannot fail.
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let signature = self.key.sign(&json);
        format!(
            "{PREFIX}.{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// Checks a blob's signature against the key it names and returns its claims (expired or
/// not: expiry is the caller's decision, it needs the clock).
pub fn verify_license(blob: &str) -> Result<LicenseClaims, LicenseError> {
    verify(blob, None)
}

/// Like [`verify_license`], but also requires the blob to be signed by `public_key_b64`.
pub fn verify_license_with_key(
    blob: &str,
    public_key_b64: &str,
) -> Result<LicenseClaims, LicenseError> {
    verify(blob, Some(public_key_b64))
}

fn verify(blob: &str, expected_key: Option<&str>) -> Result<LicenseClaims, LicenseError> {
    let mut parts = blob.trim().split('.');
    let (Some(PREFIX), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(LicenseError::Format);
    };
    let malformed = |part: &'static str, reason: String| LicenseError::Malformed { part, reason };
    let json = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|e| malformed("payload", e.to_string()))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|e| malformed("signature", e.to_string()))?;
    let signature = Signature::from_slice(&signature)
        .map_err(|_| malformed("signature", "must be 64 bytes".into()))?;
    let payload: Payload =
        serde_json::from_slice(&json).map_err(|e| malformed("payload", e.to_string()))?;
    if expected_key.is_some_and(|k| k != payload.public_key) {
        return Err(LicenseError::UnexpectedKey);
    }
    let key: [u8; 32] = URL_SAFE_NO_PAD
        .decode(&payload.public_key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| malformed("public key", "must be 32 bytes of base64url".into()))?;
    let key = VerifyingKey::from_bytes(&key)
        .map_err(|_| malformed("public key", "not an Ed25519 point".into()))?;
    key.verify(&json, &signature)
        .map_err(|_| LicenseError::BadSignature)?;
    Ok(payload.claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how a test fails
mod tests {
    use super::*;

    fn claims() -> LicenseClaims {
        LicenseClaims {
            license_id: Uuid::new_v4(),
            organization_id: Uuid::new_v4(),
            issued_at: 1_700_000_000,
            expires_at: 1_800_000_000,
        }
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let signer = LicenseSigner::generate();
        let c = claims();
        let blob = signer.sign(&c);
        assert!(blob.starts_with("fgl1."));
        assert_eq!(verify_license(&blob).unwrap(), c);
        assert_eq!(
            verify_license_with_key(&blob, &signer.public_key_b64()).unwrap(),
            c
        );
        let again = LicenseSigner::from_seed(&signer.seed());
        assert_eq!(again.public_key_b64(), signer.public_key_b64());
    }

    #[test]
    fn tampering_is_detected() {
        let signer = LicenseSigner::generate();
        let blob = signer.sign(&claims());
        let parts: Vec<&str> = blob.split('.').collect();
        // Extend the expiry in the payload, keep the signature.
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["expires_at"] = serde_json::json!(4_000_000_000_i64);
        let forged = format!(
            "fgl1.{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap()),
            parts[2]
        );
        assert_eq!(verify_license(&forged), Err(LicenseError::BadSignature));
        // Re-signed by another key: valid on its own, refused when a key is pinned.
        let other = LicenseSigner::generate().sign(&claims());
        assert_eq!(
            verify_license_with_key(&other, &signer.public_key_b64()),
            Err(LicenseError::UnexpectedKey)
        );
        for bad in ["", "fgl1", "fgl2.a.b", "fgl1.a.b.c", "fgl1.!!.AA"] {
            assert!(verify_license(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_is_inclusive() {
        let c = claims();
        assert!(!c.is_expired(c.expires_at - 1));
        assert!(c.is_expired(c.expires_at));
    }
}
