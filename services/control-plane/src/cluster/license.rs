//! Licenses: the control plane signs (Ed25519) each organisation's license and data planes
//! stop proxying once it expires. The signing key lives in `license-signing.key` in the data
//! dir (generated at first start, owner-only); the blob format is
//! [`fleetgate_protocol::license`].

use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use fleetgate_protocol::license::{LicenseClaims, LicenseSigner};
use uuid::Uuid;

use crate::store::{now_unix, LicenseRecord, Store};

/// File in the data dir holding the signing key (base64 of the 32-byte Ed25519 seed).
pub const SIGNING_KEY_FILE: &str = "license-signing.key";
/// How long the license an organisation gets by default lasts.
pub const DEFAULT_LICENSE_DAYS: i64 = 365;

/// A license and its signed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLicense {
    /// What it says.
    pub claims: LicenseClaims,
    /// `fgl1.<payload>.<signature>`, what data planes receive.
    pub blob: String,
}

impl From<LicenseRecord> for SignedLicense {
    fn from(record: LicenseRecord) -> Self {
        Self {
            claims: LicenseClaims {
                license_id: record.license_id,
                organization_id: record.organization_id,
                issued_at: record.issued_at,
                expires_at: record.expires_at,
            },
            blob: record.signed_blob,
        }
    }
}

/// Told when an organisation's license changes, so connected data planes get the new one
/// (the cluster hub implements it).
pub trait LicensePush: Send + Sync {
    /// The organisation's current license changed (already committed).
    fn license_changed(&self, org: Uuid);
}

/// A [`LicensePush`] with nobody to tell.
#[derive(Debug, Default)]
pub struct NoLicensePush;

impl LicensePush for NoLicensePush {
    fn license_changed(&self, _org: Uuid) {}
}

/// Issues and signs licenses.
#[derive(Debug)]
pub struct LicenseAuthority {
    signer: LicenseSigner,
}

impl LicenseAuthority {
    /// Loads the signing key from the data dir, generating it (owner-only) at first start.
    pub fn load_or_generate(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(SIGNING_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let seed: [u8; 32] = STANDARD
                    .decode(text.trim())
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .with_context(|| {
                        format!(
                            "read {}: expected the base64 of a 32-byte Ed25519 seed",
                            path.display()
                        )
                    })?;
                Ok(Self {
                    signer: LicenseSigner::from_seed(&seed),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let signer = LicenseSigner::generate();
                let text = format!("{}\n", STANDARD.encode(signer.seed()));
                super::tls::write_private(&path, &text)?;
                tracing::info!(path = %path.display(), "generated the license signing key");
                Ok(Self { signer })
            }
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    /// A key that lives only in memory: for in-process servers without a data dir.
    pub fn ephemeral() -> Self {
        Self {
            signer: LicenseSigner::generate(),
        }
    }

    /// The public key licenses are verified with (base64url of its 32 bytes).
    pub fn public_key_b64(&self) -> String {
        self.signer.public_key_b64()
    }

    /// The organisation's current license; one valid [`DEFAULT_LICENSE_DAYS`] is issued the
    /// first time an organisation needs one.
    pub async fn current_for(&self, store: &Store, org: Uuid) -> anyhow::Result<SignedLicense> {
        if let Some(record) = store
            .license(org)
            .await
            .context("read the organization's license")?
        {
            return Ok(record.into());
        }
        let now = now_unix();
        let record = self.sign(org, now, now + DEFAULT_LICENSE_DAYS * 24 * 60 * 60);
        let stored = store
            .put_license(&record, false)
            .await
            .context("store the organization's default license")?;
        Ok(stored.into())
    }

    /// Issues a new license expiring at `expires_at` and makes it the organisation's current
    /// one. The caller then tells the cluster hub, so connected data planes get it.
    pub async fn issue(
        &self,
        store: &Store,
        org: Uuid,
        expires_at: i64,
    ) -> anyhow::Result<SignedLicense> {
        let record = self.sign(org, now_unix(), expires_at);
        let stored = store
            .put_license(&record, true)
            .await
            .context("store the organization's license")?;
        Ok(stored.into())
    }

    fn sign(&self, org: Uuid, issued_at: i64, expires_at: i64) -> LicenseRecord {
        let claims = LicenseClaims {
            license_id: Uuid::new_v4(),
            organization_id: org,
            issued_at,
            expires_at,
        };
        let signed_blob = self.signer.sign(&claims);
        LicenseRecord {
            organization_id: org,
            license_id: claims.license_id,
            issued_at,
            expires_at,
            signed_blob,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_is_generated_once_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let first = LicenseAuthority::load_or_generate(dir.path()).expect("generate");
        let path = dir.path().join(SIGNING_KEY_FILE);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = LicenseAuthority::load_or_generate(dir.path()).expect("reload");
        assert_eq!(first.public_key_b64(), second.public_key_b64());
        std::fs::write(&path, "not a key").expect("write");
        let err = LicenseAuthority::load_or_generate(dir.path()).expect_err("bad key file");
        assert!(format!("{err:#}").contains("32-byte"), "{err:#}");
    }
}
