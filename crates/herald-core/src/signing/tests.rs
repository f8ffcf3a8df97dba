//! Signing: the SPEC's test vectors, every scheme checked by a verifier herald did
//! not write (the `standardwebhooks` crate, `ed25519-dalek`, the `rsa` crate), and
//! rotation.

use super::*;

fn input<'a>(id: &'a str, ts: i64, body: &'a str) -> SignInput<'a> {
    SignInput {
        message_id: id,
        timestamp: ts,
        body: body.as_bytes(),
    }
}

fn sign(config: &SignatureConfig, id: &str, ts: i64, body: &str) -> Vec<(String, String)> {
    config
        .signer(Utc::now())
        .unwrap()
        .sign(&input(id, ts, body))
        .unwrap()
}

fn config(scheme: SignatureScheme, secret: Option<&str>) -> SignatureConfig {
    SignatureConfig::new(scheme, None, None, secret.map(String::from)).unwrap()
}

fn verify_with(
    config: &SignatureConfig,
    key: &str,
    headers: &[(String, String)],
    body: &str,
    now: i64,
) -> Result<(), VerifyError> {
    verify(&VerifyInput {
        scheme: config.scheme,
        key,
        headers,
        body: body.as_bytes(),
        header: Some(&config.header),
        timestamp_header: Some(&config.timestamp_header),
        now,
        tolerance_seconds: 300,
    })
}

#[test]
fn seed_000_hex_vector() {
    let c = config(SignatureScheme::HmacSha256Hex, Some("your-secret-key"));
    let headers = sign(&c, "msg_x", 0, r#"{"a":{"c":3,"d":2},"b":1}"#);
    assert_eq!(
        headers,
        vec![(
            "X-Signature".to_string(),
            "224dfbea254c1f6c0a40e09ebb33691501b8e779b403e567aa5a19bb72ef01aa".to_string()
        )]
    );
}

#[test]
fn standard_webhooks_specification_vector() {
    let c = config(
        SignatureScheme::StandardWebhooks,
        Some("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
    );
    let headers = sign(
        &c,
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        1649367553,
        r#"{"email":"test@example.com","username":"test_user"}"#,
    );
    assert!(headers.contains(&(
        "webhook-signature".to_string(),
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=".to_string()
    )));
    assert!(headers.contains(&("webhook-timestamp".to_string(), "1649367553".to_string())));
}

fn header_map(headers: &[(String, String)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (n, v) in headers {
        map.insert(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

#[test]
fn the_standardwebhooks_crate_verifies_herald_during_rotation() {
    let mut c = config(SignatureScheme::StandardWebhooks, None);
    let old = c.current().secret.clone();
    let now = Utc::now();
    c.rotate(None, 3600.0, now).unwrap();
    let new = c.current().secret.clone();
    assert_ne!(old, new);
    let body = r#"{"hello":"world"}"#;
    let ts = now.timestamp();
    let headers = sign(&c, "msg_rot", ts, body);
    let signature = &headers
        .iter()
        .find(|(n, _)| n == "webhook-signature")
        .unwrap()
        .1;
    assert_eq!(
        signature.split(' ').count(),
        2,
        "both signatures during the grace: {signature}"
    );
    for secret in [&old, &new] {
        let wh = standardwebhooks::Webhook::new(secret).unwrap();
        wh.verify(body.as_bytes(), &header_map(&headers))
            .unwrap_or_else(|e| panic!("{secret}: {e:?}"));
        assert!(wh
            .verify(br#"{"hello":"tampered"}"#, &header_map(&headers))
            .is_err());
    }
    // After the grace only the new key signs.
    let later = now + chrono::Duration::seconds(3601);
    let headers = c
        .signer(later)
        .unwrap()
        .sign(&input("msg_rot", later.timestamp(), body))
        .unwrap();
    let hm = header_map(&headers);
    assert!(standardwebhooks::Webhook::new(&old)
        .unwrap()
        .verify(body.as_bytes(), &hm)
        .is_err());
    // (the crate checks the timestamp against the real clock: sign at now for it)
    let headers = c
        .signer(later)
        .unwrap()
        .sign(&input("msg_rot", ts, body))
        .unwrap();
    standardwebhooks::Webhook::new(&new)
        .unwrap()
        .verify(body.as_bytes(), &header_map(&headers))
        .unwrap();
}

#[test]
fn ed25519_signatures_verify_with_ed25519_dalek() {
    use ed25519_dalek::Verifier;
    let c = config(SignatureScheme::StandardWebhooksEd25519, None);
    let public = c.current().public_key.clone().unwrap();
    assert!(public.starts_with("whpk_"));
    let body = r#"{"a":1}"#;
    let headers = sign(&c, "msg_ed", 1_700_000_000, body);
    let sig = headers
        .iter()
        .find(|(n, _)| n == "webhook-signature")
        .unwrap()
        .1
        .clone();
    let raw = B64.decode(sig.strip_prefix("v1a,").unwrap()).unwrap();
    let key_bytes: [u8; 32] = B64
        .decode(public.strip_prefix("whpk_").unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes).unwrap();
    let signature = ed25519_dalek::Signature::from_slice(&raw).unwrap();
    key.verify(format!("msg_ed.1700000000.{body}").as_bytes(), &signature)
        .unwrap();
    assert!(key.verify(b"msg_ed.1700000000.{}", &signature).is_err());
    assert_eq!(
        verify_with(&c, &public, &headers, body, 1_700_000_010),
        Ok(())
    );
}

#[test]
fn rsa_signatures_verify_with_the_rsa_crate() {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    let c = config(SignatureScheme::RsaSha256, None);
    let public = c.current().public_key.clone().unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    let body = r#"{"order":7}"#;
    let headers = sign(&c, "msg_rsa", 0, body);
    assert_eq!(headers[0].0, "X-Signature");
    let raw = B64.decode(&headers[0].1).unwrap();
    let key = rsa::RsaPublicKey::from_public_key_pem(&public).unwrap();
    let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
    let signature = rsa::pkcs1v15::Signature::try_from(raw.as_slice()).unwrap();
    verifier.verify(body.as_bytes(), &signature).unwrap();
    assert!(verifier.verify(b"{}", &signature).is_err());
    assert_eq!(verify_with(&c, &public, &headers, body, 0), Ok(()));
}

#[test]
fn every_scheme_verifies_and_refuses_tampering() {
    for scheme in [
        SignatureScheme::HmacSha256Hex,
        SignatureScheme::HmacSha256Prefixed,
        SignatureScheme::StandardWebhooks,
        SignatureScheme::StandardWebhooksEd25519,
        SignatureScheme::RsaSha256,
    ] {
        let c = config(scheme, None);
        let key = c
            .current()
            .public_key
            .clone()
            .unwrap_or_else(|| c.current().secret.clone());
        let headers = sign(&c, "msg_v", 1_000, r#"{"x":1}"#);
        assert_eq!(
            verify_with(&c, &key, &headers, r#"{"x":1}"#, 1_000),
            Ok(()),
            "{scheme:?}"
        );
        assert_eq!(
            verify_with(&c, &key, &headers, r#"{"x":2}"#, 1_000),
            Err(VerifyError::Mismatch),
            "{scheme:?}"
        );
        if !matches!(
            scheme,
            SignatureScheme::HmacSha256Hex | SignatureScheme::RsaSha256
        ) {
            assert!(
                matches!(
                    verify_with(&c, &key, &headers, r#"{"x":1}"#, 5_000),
                    Err(VerifyError::OutsideTolerance(_))
                ),
                "{scheme:?}"
            );
        }
        assert!(
            matches!(
                verify_with(&c, &key, &[], "{}", 1_000),
                Err(VerifyError::MissingHeader(_))
            ),
            "{scheme:?}"
        );
    }
}

#[test]
fn prefixed_scheme_uses_its_header_names() {
    let c = SignatureConfig::new(
        SignatureScheme::HmacSha256Prefixed,
        Some("X-IDP-Signature".into()),
        Some("X-IDP-Timestamp".into()),
        Some("your-secret-key".into()),
    )
    .unwrap();
    let headers = sign(&c, "m", 42, r#"{"a":{"c":3,"d":2},"b":1}"#);
    assert_eq!(headers[0].0, "X-IDP-Signature");
    assert_eq!(
        headers[0].1,
        "sha256=224dfbea254c1f6c0a40e09ebb33691501b8e779b403e567aa5a19bb72ef01aa"
    );
    assert_eq!(
        headers[1],
        ("X-IDP-Timestamp".to_string(), "42".to_string())
    );
}

#[test]
fn given_keys_are_checked() {
    assert!(SignatureScheme::StandardWebhooks
        .key_from("nope".into(), "secret")
        .is_err());
    assert!(SignatureScheme::StandardWebhooksEd25519
        .key_from("whsk_short".into(), "secret")
        .is_err());
    assert!(SignatureScheme::RsaSha256
        .key_from("not a key".into(), "secret")
        .is_err());
    let generated = SignatureScheme::RsaSha256.generate_key();
    let again = SignatureScheme::RsaSha256
        .key_from(generated.secret.clone(), "secret")
        .unwrap();
    assert_eq!(again.public_key, generated.public_key);
    let ed = SignatureScheme::StandardWebhooksEd25519.generate_key();
    assert_eq!(
        SignatureScheme::StandardWebhooksEd25519
            .key_from(ed.secret.clone(), "s")
            .unwrap()
            .public_key,
        ed.public_key
    );
}

#[test]
fn rotation_with_no_grace_drops_the_old_key_at_once() {
    let mut c = config(SignatureScheme::HmacSha256Hex, Some("secret-one"));
    let now = Utc::now();
    c.rotate(Some("secret-two".into()), 0.0, now).unwrap();
    assert_eq!(c.keys.len(), 1);
    assert_eq!(c.current().secret, "secret-two");
    assert!(c.rotate(None, -1.0, now).is_err());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn verify_never_panics_on_received_headers(
            names in prop::collection::vec(prop_oneof![Just("webhook-id".to_string()), Just("webhook-timestamp".to_string()), Just("webhook-signature".to_string()), Just("X-Signature".to_string()), Just("X-Timestamp".to_string()), Just("X-Webhook-Signature".to_string()), ".*"], 0..6),
            values in prop::collection::vec(".*", 6),
            key in ".*",
            body in prop::collection::vec(proptest::arbitrary::any::<u8>(), 0..64),
            scheme in 0usize..5,
        ) {
            let scheme = [SignatureScheme::HmacSha256Hex, SignatureScheme::HmacSha256Prefixed, SignatureScheme::StandardWebhooks, SignatureScheme::StandardWebhooksEd25519, SignatureScheme::RsaSha256][scheme];
            let headers: Vec<(String, String)> = names.into_iter().zip(values).collect();
            let _ = verify(&VerifyInput { scheme, key: &key, headers: &headers, body: &body, header: None, timestamp_header: None, now: 0, tolerance_seconds: 300 });
        }
    }
}
