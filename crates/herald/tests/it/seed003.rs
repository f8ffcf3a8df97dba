//! Seed 003's documented examples, sent as written (only the URLs point at the
//! test receiver), end to end: configure, send, the headers that arrive, the
//! signature checked as the seed's JavaScript does, a permanent failure in the
//! dead-letter list, retry, configs and metrics, receive, delete; and the native
//! API sees the same data.

use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{spawn_app, Receiver, Reply};

/// The seed's `verifySignature`: `'sha256=' + hmac_sha256_hex(secret, payload)`.
fn verify_signature(payload: &[u8], signature: &str, secret: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(payload);
    signature == format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

herald_test! {
async fn seed_003_examples_work_end_to_end() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.script("/gone", [Reply::status(410)]);

    let configure = json!({
      "tenant_id": "empresa-123",
      "base_url": rx.url("/webhooks"),
      "secret_key": "super-secret-key-123",
      "default_headers": {"X-API-Version": "v2", "User-Agent": "PyTake-Webhook/1.0"},
      "retry_policy": {"max_retries": 5, "initial_delay_seconds": 1, "backoff_multiplier": 2.0, "max_delay_seconds": 300, "jitter": true},
      "timeout_seconds": 30,
      "enabled_events": ["user.*", "payment.completed", "order.*"],
      "active": true,
      "auth_config": {"auth_type": "Bearer", "token": "sk_live_123456789", "header_name": "Authorization"}
    });
    let (status, config) = app.post("/api/v1/webhooks/configure", configure).await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["tenant_id"], "empresa-123");
    assert_eq!(config["auth_type"], "Bearer");
    assert!(!config.to_string().contains("sk_live_123456789") && !config.to_string().contains("super-secret-key-123"));

    let send = json!({
      "tenant_id": "empresa-123",
      "event_type": "user.created",
      "payload": {"user_id": "usr_12345", "email": "joao@empresa.com", "name": "João Silva", "created_at": "2024-01-15T10:30:00Z"},
      "target_url": rx.url("/endpoint"),
      "custom_headers": {"X-Event-Priority": "high"},
      "severity": "Medium",
      "context": {"transaction_id": "txn_abc123", "source": "api_v1"}
    });
    let (status, sent) = app.post("/api/v1/webhooks/send", send).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let event_id = sent["event_id"].as_str().unwrap().to_string();
    let got = rx.wait_for("/endpoint", 1).await;
    let request = &got[0];
    assert!(verify_signature(&request.body, request.header("x-webhook-signature").unwrap(), "super-secret-key-123"));
    assert_eq!(request.header("x-event-type"), Some("user.created"));
    assert_eq!(request.header("x-event-id"), Some(event_id.as_str()));
    assert_eq!(request.header("x-tenant-id"), Some("empresa-123"));
    assert!(request.header("x-timestamp").unwrap().parse::<i64>().is_ok());
    assert_eq!(request.header("x-api-version"), Some("v2"));
    assert_eq!(request.header("user-agent"), Some("PyTake-Webhook/1.0"));
    assert_eq!(request.header("x-event-priority"), Some("high"));
    assert_eq!(request.header("authorization"), Some("Bearer sk_live_123456789"));
    assert_eq!(request.json()["name"], "João Silva");

    // Without target_url the tenant's configuration (base_url, event filter) applies.
    let (_, second) = app.post("/api/v1/webhooks/send", json!({"tenant_id": "empresa-123", "event_type": "order.paid", "payload": {"order": 1}})).await;
    rx.wait_for("/webhooks", 1).await;
    let (_, ignored) = app.post("/api/v1/webhooks/send", json!({"tenant_id": "empresa-123", "event_type": "other.thing", "payload": {}})).await;
    assert_eq!(ignored["deliveries"], 0, "not in enabled_events");

    // A permanent failure lands in the dead-letter queue, and retry delivers it.
    let (_, failing) = app.post("/api/v1/webhooks/send", json!({"tenant_id": "empresa-123", "event_type": "payment.completed", "payload": {"amount": 10}, "target_url": rx.url("/gone")})).await;
    let failing_id = failing["event_id"].as_str().unwrap().to_string();
    app.settled("empresa-123", &failing_id, "failed").await;
    let (status, dead) = app.get("/api/v1/webhooks/dead-letter?tenant_id=empresa-123").await;
    assert_eq!(status, StatusCode::OK);
    let entry = &dead.as_array().unwrap()[0];
    assert_eq!(entry["event"]["id"], failing_id.as_str());
    assert_eq!(entry["event"]["payload"], json!({"amount": 10}));
    assert_eq!(entry["attempts"].as_array().unwrap().len(), 1);
    assert!(entry["failure_reason"].as_str().unwrap().contains("410"));
    assert!(entry["failed_at"].is_string());
    assert_eq!(entry["can_retry"], true);
    let (status, retried) = app.post(&format!("/api/v1/webhooks/retry/{failing_id}"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    app.settled("empresa-123", &failing_id, "succeeded").await;
    assert_eq!(rx.requests("/gone").len(), 2);

    // configs and metrics agree with what happened.
    let (_, configs) = app.get("/api/v1/webhooks/configs").await;
    let configs = configs["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0]["base_url"], rx.url("/webhooks").as_str());
    assert_eq!(configs[0]["enabled_events"], json!(["user.*", "payment.completed", "order.*"]));
    let (_, metrics) = app.get("/api/v1/webhooks/metrics/empresa-123").await;
    assert_eq!(metrics["total_events"], 4);
    assert_eq!(metrics["successful_events"], 3);
    assert_eq!(metrics["failed_events"], 1);
    assert_eq!(metrics["dead_letter_count"], 0);
    for field in ["pending_retries", "avg_response_time_ms", "last_updated"] {
        assert!(metrics.get(field).is_some(), "{field}");
    }

    // The native API sees the same data.
    let (_, messages) = app.get("/api/v1/tenants/empresa-123/messages").await;
    assert_eq!(messages["data"].as_array().unwrap().len(), 4);
    let (_, one) = app.get(&format!("/api/v1/tenants/empresa-123/messages/{}", second["event_id"].as_str().unwrap())).await;
    assert_eq!(one["status"], "succeeded");
    let (_, endpoints) = app.get("/api/v1/tenants/empresa-123/endpoints").await;
    assert_eq!(endpoints["data"][0]["signature"]["scheme"], "hmac-sha256-prefixed");

    // receive checks a signature with the tenant's secret.
    let payload = br#"{"event":"test","data":"example"}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(b"super-secret-key-123").unwrap();
    mac.update(payload);
    let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    for (signature, expected) in [(good.as_str(), 200), ("sha256=a8b7c6d5e4f3", 401)] {
        let response = app
            .http
            .post(format!("{}/api/v1/webhooks/receive", app.base))
            .header("X-Tenant-ID", "empresa-123")
            .header("X-Webhook-Signature", signature)
            .body(payload.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{signature}");
    }

    let (status, _) = app.delete("/api/v1/webhooks/config/empresa-123").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, configs) = app.get("/api/v1/webhooks/configs").await;
    assert_eq!(configs["configs"], Value::Array(vec![]));
}
}

herald_test! {
async fn seed_003_auth_types_and_bad_input() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    for (tenant, auth, header, value) in [
        ("apikey-co", json!({"auth_type": "ApiKey", "token": "api_key_123456789", "header_name": "X-API-Key"}), "x-api-key", "api_key_123456789"),
        ("basic-co", json!({"auth_type": "Basic", "token": "username:password"}), "authorization", "Basic dXNlcm5hbWU6cGFzc3dvcmQ="),
    ] {
        let body = json!({"tenant_id": tenant, "base_url": rx.url(&format!("/{tenant}")), "secret_key": "k-123456", "auth_config": auth});
        let (status, answer) = app.post("/api/v1/webhooks/configure", body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        app.post("/api/v1/webhooks/send", json!({"tenant_id": tenant, "event_type": "a.b", "payload": {}})).await;
        assert_eq!(rx.wait_for(&format!("/{tenant}"), 1).await[0].header(header), Some(value));
    }
    let (status, answer) = app
        .post("/api/v1/webhooks/configure", json!({"tenant_id": "x", "base_url": rx.url("/x"), "secret_key": "k", "auth_config": {"auth_type": "Magic", "token": "t"}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["field"], "auth_config.auth_type");
    let (status, answer) = app.post("/api/v1/webhooks/send", json!({"tenant_id": "nobody", "event_type": "a", "payload": {}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, _) = app.post("/api/v1/webhooks/retry/msg_01J00000000000000000000000", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
}
