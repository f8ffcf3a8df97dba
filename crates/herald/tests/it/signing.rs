//! Signatures as receivers verify them: Standard Webhooks (the default) with the
//! secret from the API, and seed 000's hex HMAC on ad-hoc callbacks.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::helpers::{spawn_app, Receiver};

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

herald_test! {
async fn standard_webhooks_signature_verifies_with_the_served_secret() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    let ep = app
        .endpoint(
            "acme",
            json!({"url": rx.url("/sw"), "headers": {"X-API-Version": "v2"}}),
        )
        .await;
    let (_, secret) = app
        .get(&format!("/api/v1/tenants/acme/endpoints/{ep}/secret"))
        .await;
    assert_eq!(secret["scheme"], "standard-webhooks");
    let secret = secret["secret"].as_str().unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let (_, endpoint) = app
        .get(&format!("/api/v1/tenants/acme/endpoints/{ep}"))
        .await;
    assert!(
        !endpoint.to_string().contains(secret),
        "the endpoint never echoes its secret"
    );

    let id = app
        .message("acme", "user.created", json!({"email": "a@b.c"}))
        .await;
    let got = rx.wait_for("/sw", 1).await;
    let request = &got[0];
    assert_eq!(request.header("webhook-id"), Some(id.as_str()));
    assert_eq!(request.header("x-api-version"), Some("v2"));
    let timestamp = request.header("webhook-timestamp").unwrap();
    assert_eq!(request.header("x-timestamp"), Some(timestamp));
    let signed = format!(
        "{id}.{timestamp}.{}",
        std::str::from_utf8(&request.body).unwrap()
    );
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(hmac(&key, signed.as_bytes()))
    );
    assert_eq!(request.header("webhook-signature"), Some(expected.as_str()));
}
}

herald_test! {
async fn hex_hmac_scheme_signs_the_exact_body() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/hex"), "signature": {"scheme": "hmac-sha256-hex", "secret": "your-secret-key", "header": "X-Sig"}})).await;
    app.message("acme", "a", json!({"b": 1, "a": {"d": 2, "c": 3}}))
        .await;
    let got = rx.wait_for("/hex", 1).await;
    assert_eq!(&got[0].body[..], br#"{"a":{"c":3,"d":2},"b":1}"#);
    assert_eq!(
        got[0].header("x-sig"),
        Some("224dfbea254c1f6c0a40e09ebb33691501b8e779b403e567aa5a19bb72ef01aa")
    );
}
}

herald_test! {
async fn ad_hoc_callbacks_carry_seed_000s_signature() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let body = json!({"target_url": rx.url("/partner"), "hmac_secret": "your-secret-key", "payload": {"b": 1, "a": {"d": 2, "c": 3}}});
    let (status, answer) = app.post("/api/v1/callbacks", body).await;
    assert_eq!(status, axum::http::StatusCode::ACCEPTED, "{answer}");
    assert!(!answer.to_string().contains("your-secret-key"));
    let got = rx.wait_for("/partner", 1).await;
    assert_eq!(got[0].method, "POST");
    assert_eq!(&got[0].body[..], br#"{"a":{"c":3,"d":2},"b":1}"#);
    assert_eq!(
        got[0].header("x-signature"),
        Some("224dfbea254c1f6c0a40e09ebb33691501b8e779b403e567aa5a19bb72ef01aa")
    );
    let expected = hex::encode(hmac(b"your-secret-key", &got[0].body));
    assert_eq!(got[0].header("x-signature"), Some(expected.as_str()));
}
}

herald_test! {
async fn auth_headers_reach_the_target_and_are_redacted_in_the_log() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/auth"), "auth": {"type": "bearer", "token": "tok-very-secret"}}),
    )
    .await;
    app.endpoint("acme", json!({"url": rx.url("/key"), "auth": {"type": "api_key", "header_name": "X-Api-Key", "key": "key-very-secret"}})).await;
    let id = app.message("acme", "a", json!({})).await;
    assert_eq!(
        rx.wait_for("/auth", 1).await[0].header("authorization"),
        Some("Bearer tok-very-secret")
    );
    assert_eq!(
        rx.wait_for("/key", 1).await[0].header("x-api-key"),
        Some("key-very-secret")
    );
    app.settled("acme", &id, "succeeded").await;
    let (_, log) = app
        .get(&format!("/api/v1/tenants/acme/messages/{id}/attempts"))
        .await;
    let text = log.to_string();
    assert!(!text.contains("very-secret"), "{text}");
    assert!(text.contains("[redacted]"));
    let (_, endpoints) = app.get("/api/v1/tenants/acme/endpoints").await;
    assert!(!endpoints.to_string().contains("very-secret"));
}
}
