//! The management API's contract: bad input gets its status and a message naming
//! the field (and the service stays ready), admin auth, lists and cursors, tenants,
//! OpenAPI.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with};

async fn raw(app: &crate::helpers::TestApp, path: &str, body: &'static str) -> (StatusCode, Value) {
    let response = app
        .http
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap_or(Value::Null))
}

herald_test! {
async fn bad_input_gets_a_clear_error_and_the_service_stays_ready() {
    let app = spawn_app_with(|c| c.max_body_bytes = 4096).await;
    app.tenant("acme").await;
    let endpoints = "/api/v1/tenants/acme/endpoints";
    let messages = "/api/v1/tenants/acme/messages";
    let cases: Vec<(&str, &'static str, StatusCode, Option<&str>)> = vec![
        (endpoints, "{not json", StatusCode::BAD_REQUEST, None),
        (
            endpoints,
            r#"{"url": 5}"#,
            StatusCode::BAD_REQUEST,
            Some("url"),
        ),
        (
            endpoints,
            r#"{"url": "http://x.io", "bogus": 1}"#,
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            endpoints,
            r#"{"url": "file:///etc/passwd"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("url"),
        ),
        (
            endpoints,
            r#"{"url": "http://x.io", "headers": {"X-A": "a\r\nB: c"}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("headers.X-A"),
        ),
        (
            endpoints,
            r#"{"url": "http://x.io", "event_types": []}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("event_types"),
        ),
        (
            endpoints,
            r#"{"url": "http://x.io", "retry_policy": {"delays_seconds": [0.01]}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("retry_policy.delays_seconds[0]"),
        ),
        (
            endpoints,
            r#"{"url": "http://x.io", "mode": "sideways"}"#,
            StatusCode::BAD_REQUEST,
            Some("mode"),
        ),
        (
            messages,
            r#"{"payload": {}}"#,
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            messages,
            r#"{"event_type": "bad type", "payload": {}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("event_type"),
        ),
        (
            messages,
            r#"{"event_type": "a", "payload": {}, "headers": {"X": "1\n2"}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("headers.X"),
        ),
        (
            "/api/v1/tenants",
            r#"{"id": "no spaces allowed"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("id"),
        ),
    ];
    for (path, body, status, field) in cases {
        let (got, answer) = raw(&app, path, body).await;
        assert_eq!(got, status, "{body} -> {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
        if let Some(field) = field {
            assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
        }
    }
    let big = json!({"event_type": "a", "payload": {"blob": "x".repeat(8000)}});
    let (status, answer) = app.post(messages, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
    let (status, _) = app
        .post(
            "/api/v1/tenants/nobody/messages",
            json!({"event_type": "a", "payload": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/api/v1/tenants/acme/messages/msg_nonsense").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/api/v1/tenants/acme/messages?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
}
}

herald_test! {
async fn the_admin_token_guards_the_api() {
    let mut app = spawn_app_with(|c| {
        c.admin_token = Some(serde_json::from_value(json!("admin-token-123")).unwrap())
    })
    .await;
    let (status, _) = app.get("/api/v1/tenants").await;
    assert_eq!(status, StatusCode::OK);
    app.token = Some("wrong-token".into());
    let (status, body) = app.get("/api/v1/tenants").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    app.token = None;
    let (status, _) = app.post("/api/v1/callbacks", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for open in ["/api/v1/openapi.json", "/healthz", "/readyz"] {
        let (status, _) = app.get(open).await;
        assert_eq!(status, StatusCode::OK, "{open}");
    }
}
}

herald_test! {
async fn lists_page_with_cursors_newest_first() {
    let app = spawn_app().await;
    app.tenant("acme").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            app.message(
                "acme",
                if n % 2 == 0 { "even" } else { "odd" },
                json!({"n": n}),
            )
            .await,
        );
    }
    let (_, first) = app.get("/api/v1/tenants/acme/messages?limit=2").await;
    let page: Vec<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(page, vec![ids[4].as_str(), ids[3].as_str()]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app
        .get(&format!(
            "/api/v1/tenants/acme/messages?limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(second["data"][0]["id"], ids[2].as_str());
    let (_, third) = app
        .get(&format!(
            "/api/v1/tenants/acme/messages?limit=2&cursor={}",
            second["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(third["data"].as_array().unwrap().len(), 1);
    assert_eq!(third["next_cursor"], Value::Null);
    let (_, even) = app
        .get("/api/v1/tenants/acme/messages?event_type=even")
        .await;
    assert_eq!(even["data"].as_array().unwrap().len(), 3);
    let (_, none) = app
        .get("/api/v1/tenants/acme/messages?since=2100-01-01T00:00:00Z")
        .await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0);
}
}

herald_test! {
async fn tenants_and_endpoints_are_managed() {
    let app = spawn_app().await;
    let (status, tenant) = app
        .post("/api/v1/tenants", json!({"name": "Generated"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let tid = tenant["id"].as_str().unwrap();
    assert!(tid.starts_with("ten_"));
    app.tenant("acme").await;
    let (status, _) = app.post("/api/v1/tenants", json!({"id": "acme"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, patched) = app
        .patch(
            "/api/v1/tenants/acme",
            json!({"name": "Acme Inc", "retry_policy": {"delays_seconds": [1, 2]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["name"], "Acme Inc");
    let ep = app
        .endpoint(
            "acme",
            json!({"url": "https://example.com/hook", "description": "main"}),
        )
        .await;
    let (status, updated) = app
        .patch(
            &format!("/api/v1/tenants/acme/endpoints/{ep}"),
            json!({"active": false, "method": "put"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["active"], false);
    assert_eq!(updated["method"], "PUT");
    assert_eq!(updated["description"], "main");
    let (status, _) = app
        .get(&format!("/api/v1/tenants/{tid}/endpoints/{ep}"))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an endpoint is only found under its own tenant"
    );
    let (_, list) = app.get("/api/v1/tenants").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let (status, _) = app.delete("/api/v1/tenants/acme").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .get(&format!("/api/v1/tenants/acme/endpoints/{ep}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
}

herald_test! {
async fn the_openapi_document_describes_the_routes() {
    let app = spawn_app().await;
    let (status, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/tenants/{tid}/endpoints",
        "/api/v1/tenants/{tid}/messages",
        "/api/v1/callbacks",
        "/api/v1/tenants/{tid}/dead-letters/replay",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["EndpointSpec"].is_object());
}
}
