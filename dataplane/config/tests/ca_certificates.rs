//! CA certificates (`ca_certificates`), services trusting them, and key-auth `ttl` expiry
//! stamps: parsing, validation, references, hash and the declarative format.

use fleetgate_config::declarative::{export_yaml, import};
use fleetgate_config::{
    parse_entity, CaCertificate, Entity, EntityKind, FieldError, GatewayConfig, KeyAuthCredential,
    OnDelete, Service, Uuid,
};
use rcgen::{date_time_ymd, BasicConstraints, CertificateParams, IsCa, KeyPair};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A self-signed certificate, a CA or not, valid until `not_after_year`.
fn cert_pem(ca: bool, not_after_year: i32) -> (String, Vec<u8>) {
    let mut params = CertificateParams::new(vec!["ca.test".to_string()]).expect("params");
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(not_after_year, 1, 1);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("sign");
    (cert.pem(), cert.der().to_vec())
}

fn fields<E: Entity>(body: serde_json::Value) -> Vec<FieldError> {
    parse_entity::<E>(&body).expect_err("must be refused")
}

#[test]
fn a_ca_certificate_gets_its_digest_computed() {
    let (pem, der) = cert_pem(true, 2099);
    let ca: CaCertificate = parse_entity(&json!({
        "cert": pem,
        // A client's digest is replaced, as Kong does.
        "cert_digest": "00",
        "tags": ["edge"],
    }))
    .expect("valid CA");
    let digest = hex::encode(Sha256::digest(&der));
    assert_eq!(ca.cert_digest.as_deref(), Some(digest.as_str()));
    assert_eq!(ca.unique_keys(), vec![("cert_digest", digest)]);
    assert!(ca.references().is_empty());
    assert_eq!(ca.inspect().expect("inspect").der, der);
}

#[test]
fn bad_ca_certificates_are_refused_naming_cert() {
    let (leaf, _) = cert_pem(false, 2099);
    let errs = fields::<CaCertificate>(json!({ "cert": leaf }));
    assert_eq!(errs[0].field, "cert");
    assert!(errs[0]
        .reason
        .contains("missing the \"CA\" basic constraint"));

    let (expired, _) = cert_pem(true, 2021);
    let errs = fields::<CaCertificate>(json!({ "cert": expired }));
    assert_eq!(errs[0].field, "cert");
    assert!(errs[0].reason.contains("certificate expired"));

    let (a, _) = cert_pem(true, 2099);
    let (b, _) = cert_pem(true, 2099);
    let errs = fields::<CaCertificate>(json!({ "cert": format!("{a}{b}") }));
    assert_eq!(
        errs[0],
        FieldError::new("cert", "please submit only one certificate at a time")
    );

    let errs = fields::<CaCertificate>(json!({
        "cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    }));
    assert_eq!(errs[0].field, "cert");
    let errs = fields::<CaCertificate>(json!({ "cert": "hello" }));
    assert_eq!(errs[0].field, "cert");
    let errs = fields::<CaCertificate>(json!({}));
    assert_eq!(errs[0], FieldError::new("cert", "required field missing"));
    let errs = fields::<CaCertificate>(json!({ "cert": a, "key": "x" }));
    assert_eq!(errs[0], FieldError::new("key", "unknown field"));
}

#[test]
fn services_reference_ca_certificates_and_may_not_dangle() {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let service: Service = parse_entity(&json!({
        "url": "https://api.test", "ca_certificates": [a, b], "tls_verify": true,
    }))
    .expect("valid");
    let refs = service.references();
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[1].field, "ca_certificates[1]");
    assert_eq!(refs[1].kind, EntityKind::CaCertificate);
    assert_eq!(refs[1].id, b);
    assert!(refs.iter().all(|r| r.on_delete == OnDelete::Restrict));

    let errs = fields::<Service>(json!({"url": "http://api.test", "ca_certificates": [a]}));
    assert_eq!(errs[0].field, "ca_certificates");
    let errs = fields::<Service>(json!({"url": "https://api.test", "ca_certificates": [a, a]}));
    assert_eq!(errs[0].field, "ca_certificates[1]");
    let errs = fields::<Service>(json!({"url": "https://api.test", "ca_certificates": ["x"]}));
    assert_eq!(errs[0].field, "ca_certificates[0]");

    let mut config = GatewayConfig::default();
    let mut service = service;
    service.id = Uuid::new_v4();
    config.services.push(service);
    let errs = config.validate().expect_err("dangling");
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].field, "services[0].ca_certificates[0]");
    assert!(errs[0].reason.contains("no ca certificate with id"));

    for id in [a, b] {
        let (pem, _) = cert_pem(true, 2099);
        let mut ca: CaCertificate = parse_entity(&json!({ "cert": pem })).expect("valid");
        ca.id = id;
        config.ca_certificates.push(ca);
    }
    config.validate().expect("resolved");
}

#[test]
fn the_same_ca_twice_and_a_forged_digest_are_invalid_in_a_config() {
    let (pem, _) = cert_pem(true, 2099);
    let ca: CaCertificate = parse_entity(&json!({ "cert": pem })).expect("valid");
    let mut config = GatewayConfig::default();
    for _ in 0..2 {
        let mut ca = ca.clone();
        ca.id = Uuid::new_v4();
        config.ca_certificates.push(ca);
    }
    let errs = config.validate().expect_err("duplicate digest");
    assert_eq!(errs[0].field, "ca_certificates[1].cert_digest");
    config.ca_certificates.pop();
    config.ca_certificates[0].cert_digest = Some("ab".into());
    let errs = config.validate().expect_err("forged digest");
    assert_eq!(errs[0].field, "ca_certificates[0].cert_digest");
}

#[test]
fn ca_certificates_change_the_hash_and_sort_first_in_canonical_json() {
    let (pem, _) = cert_pem(true, 2099);
    let mut ca: CaCertificate = parse_entity(&json!({ "cert": pem })).expect("valid");
    ca.id = Uuid::from_u128(7);
    let mut service: Service = parse_entity(&json!({"url": "https://api.test"})).expect("valid");
    service.id = Uuid::from_u128(1);
    let mut config = GatewayConfig {
        services: vec![service],
        ..GatewayConfig::default()
    };
    let before = config.hash();
    config.ca_certificates.push(ca);
    let with_ca = config.hash();
    assert_ne!(before, with_ca);
    config.services[0].ca_certificates = Some(vec![Uuid::from_u128(7)]);
    config.services[0].tls_verify = Some(true);
    assert_ne!(config.hash(), with_ca);
    config.validate().expect("valid");
    let json = String::from_utf8(config.canonical_json()).expect("utf-8");
    assert!(
        json.starts_with("{\"ca_certificates\":[{\"cert\":"),
        "{json}"
    );
}

#[test]
fn declarative_files_carry_ca_certificates() {
    let (pem, der) = cert_pem(true, 2099);
    let ca_id = "8a7c3b0e-5f5e-4a55-9d4c-6a1f0f3c2b11";
    let yaml = format!(
        "_format_version: \"3.0\"\nca_certificates:\n- id: {ca_id}\n  cert: |\n{}\nservices:\n- name: api\n  url: https://api.test\n  tls_verify: true\n  tls_verify_depth: 2\n  ca_certificates: [{ca_id}]\n",
        pem.lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let config = import(&yaml).expect("imports");
    assert_eq!(config.ca_certificates.len(), 1);
    assert_eq!(
        config.ca_certificates[0].cert_digest.as_deref(),
        Some(hex::encode(Sha256::digest(&der)).as_str())
    );
    assert_eq!(
        config.services[0].ca_certificates,
        Some(vec![Uuid::parse_str(ca_id).expect("uuid")])
    );
    let exported = export_yaml(&config);
    assert!(exported.contains("ca_certificates:"), "{exported}");
    let again = import(&exported).expect("re-imports");
    assert_eq!(again.hash(), config.hash());

    // Without an id, the certificate itself decides the id: importing twice is stable.
    let anonymous = format!(
        "_format_version: \"3.0\"\nca_certificates:\n- cert: {}\n",
        serde_json::to_string(&pem).expect("json string")
    );
    assert_eq!(
        import(&anonymous).expect("a").hash(),
        import(&anonymous).expect("b").hash()
    );

    let dangling = "_format_version: \"3.0\"\nservices:\n- name: api\n  url: https://api.test\n  ca_certificates: [8a7c3b0e-5f5e-4a55-9d4c-6a1f0f3c2b12]\n";
    let err = import(dangling).expect_err("dangling reference");
    assert!(
        err.to_string().contains("services[0].ca_certificates[0]"),
        "{err}"
    );
}

#[test]
fn key_auth_expiry_is_stamped_from_ttl_and_read_only() {
    let consumer = Uuid::new_v4();
    let cred: KeyAuthCredential = parse_entity(&json!({
        "consumer": {"id": consumer}, "key": "k", "ttl": 60, "expires_at": 5,
    }))
    .expect("valid");
    // A client cannot choose the expiry.
    assert_eq!(cred.expires_at, None);
    assert_eq!(cred.ttl, Some(60));

    let mut body = serde_json::to_value(&cred).expect("json");
    KeyAuthCredential::stamp_expiry(&mut body, 1_000);
    assert_eq!(body["expires_at"], json!(1_060));
    let stamped: KeyAuthCredential = serde_json::from_value(body.clone()).expect("decode");
    assert!(!stamped.is_expired_at(1_059));
    assert!(stamped.is_expired_at(1_060));

    body.as_object_mut().expect("object").remove("ttl");
    KeyAuthCredential::stamp_expiry(&mut body, 1_000);
    assert!(body.get("expires_at").is_none());
    let forever: KeyAuthCredential = serde_json::from_value(body).expect("decode");
    assert!(!forever.is_expired_at(i64::MAX));
}
