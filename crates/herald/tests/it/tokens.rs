//! Tenant-scoped tokens: tenant A's token cannot read, change or replay anything
//! of tenant B; the admin token sees all; wrong and missing tokens get 401; a
//! revoked token stops working.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app_with, Receiver, Reply};

herald_test! {
async fn a_tenant_token_sees_only_its_tenant() {
    let mut app = spawn_app_with(|c| c.admin_token = Some(serde_json::from_value(json!("admin-token-123456")).unwrap())).await;
    let rx = Receiver::start().await;
    rx.default_reply("/b", Reply::status(410));
    app.tenant("tenant-a").await;
    app.tenant("tenant-b").await;
    app.endpoint("tenant-a", json!({"url": rx.url("/a")})).await;
    let b_endpoint = app.endpoint("tenant-b", json!({"url": rx.url("/b")})).await;
    let b_message = app.message("tenant-b", "x", json!({})).await;
    app.settled("tenant-b", &b_message, "failed").await;
    let (_, dead) = app.get("/api/v1/tenants/tenant-b/dead-letters").await;
    let b_dead = dead["data"][0]["id"].as_str().unwrap().to_string();

    let (status, made) = app.post("/api/v1/tenants/tenant-a/tokens", json!({"name": "ci"})).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    assert!(made["id"].as_str().unwrap().starts_with("tok_"));
    let (_, listed) = app.get("/api/v1/tenants/tenant-a/tokens").await;
    assert_eq!(listed["data"][0]["name"], "ci");
    assert!(listed["data"][0].get("token").is_none(), "shown once only");

    app.token = Some(token.clone());
    let (status, _) = app.get("/api/v1/tenants/tenant-a/endpoints").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.post("/api/v1/tenants/tenant-a/messages", json!({"event_type": "x", "payload": {}})).await;
    assert_eq!(status, StatusCode::CREATED);
    for (method, path, body) in [
        (reqwest::Method::GET, format!("/api/v1/tenants/tenant-b/messages/{b_message}"), None),
        (reqwest::Method::GET, "/api/v1/tenants/tenant-b/endpoints".to_string(), None),
        (reqwest::Method::POST, "/api/v1/tenants/tenant-b/messages".to_string(), Some(json!({"event_type": "x", "payload": {}}))),
        (reqwest::Method::PATCH, format!("/api/v1/tenants/tenant-b/endpoints/{b_endpoint}"), Some(json!({"active": false}))),
        (reqwest::Method::POST, format!("/api/v1/tenants/tenant-b/dead-letters/{b_dead}/replay"), Some(json!({}))),
        (reqwest::Method::POST, "/api/v1/tenants/tenant-b/dead-letters/replay".to_string(), Some(json!({}))),
        (reqwest::Method::GET, "/api/v1/tenants".to_string(), None),
        (reqwest::Method::POST, "/api/v1/tenants/tenant-a/tokens".to_string(), Some(json!({}))),
        (reqwest::Method::DELETE, "/api/v1/tenants/tenant-a".to_string(), None),
        (reqwest::Method::GET, "/api/v1/webhooks/dead-letter?tenant_id=tenant-b".to_string(), None),
        (reqwest::Method::GET, "/api/v1/webhook-failures".to_string(), None),
    ] {
        let (status, answer) = app.call(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
    }

    app.token = Some("htk_not-a-real-token".into());
    let (status, _) = app.get("/api/v1/tenants/tenant-a/endpoints").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.token = None;
    let (status, _) = app.get("/api/v1/tenants/tenant-a/endpoints").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The admin sees all, and revokes.
    app.token = Some("admin-token-123456".into());
    let (status, _) = app.get(&format!("/api/v1/tenants/tenant-b/messages/{b_message}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.delete(&format!("/api/v1/tenants/tenant-a/tokens/{}", made["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    app.token = Some(token);
    let (status, _) = app.get("/api/v1/tenants/tenant-a/endpoints").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked token no longer works");
}
}
