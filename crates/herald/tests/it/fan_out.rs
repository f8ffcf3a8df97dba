//! Fan-out by event filter, idempotency keys, resend and cancel.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, Receiver, Reply};

herald_test! {
async fn fan_out_follows_each_endpoints_filter() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.default_reply("/broken", Reply::status(500));
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/all")})).await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/users"), "event_types": ["user.*"]}),
    )
    .await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/orders"), "event_types": ["order.created"]}),
    )
    .await;
    app.endpoint("acme", json!({"url": rx.url("/broken"), "event_types": ["user.*"], "retry_policy": {"delays_seconds": [0.1]}})).await;
    let id = app.message("acme", "user.created", json!({"id": 7})).await;
    let message = app.settled("acme", &id, "failed").await;
    assert_eq!(message["deliveries"].as_array().unwrap().len(), 3);
    rx.wait_for("/all", 1).await;
    rx.wait_for("/users", 1).await;
    assert!(rx.requests("/orders").is_empty());
    let statuses: Vec<&str> = message["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "succeeded").count(),
        2,
        "one failure touches no other: {statuses:?}"
    );
    // endpoint_ids narrows the fan-out.
    let (_, endpoints) = app.get("/api/v1/tenants/acme/endpoints").await;
    let all = endpoints["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == rx.url("/all").as_str())
        .unwrap()["id"]
        .clone();
    let (status, body) = app
        .post(
            "/api/v1/tenants/acme/messages",
            json!({"event_type": "user.created", "payload": {}, "endpoint_ids": [all]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 1);
}
}

herald_test! {
async fn a_repeated_idempotency_key_returns_the_first_message() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/once")})).await;
    let body = json!({"event_type": "a", "payload": {"n": 1}, "idempotency_key": "order-42"});
    let (first_status, first) = app
        .post("/api/v1/tenants/acme/messages", body.clone())
        .await;
    let (second_status, second) = app
        .post(
            "/api/v1/tenants/acme/messages",
            json!({"event_type": "a", "payload": {"n": 2}, "idempotency_key": "order-42"}),
        )
        .await;
    assert_eq!(first_status, StatusCode::CREATED);
    assert_eq!(second_status, StatusCode::OK);
    assert_eq!(first["id"], second["id"]);
    assert_eq!(second["payload"], json!({"n": 1}));
    // Concurrent repeats too.
    let racing = futures_join(
        &app,
        json!({"event_type": "a", "payload": {}, "idempotency_key": "race"}),
    )
    .await;
    assert!(racing.windows(2).all(|w| w[0] == w[1]), "{racing:?}");
    app.settled("acme", first["id"].as_str().unwrap(), "succeeded")
        .await;
    let (_, list) = app.get("/api/v1/tenants/acme/messages").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}
}

/// Sends the same body eight times at once; returns the ids answered.
async fn futures_join(app: &crate::helpers::TestApp, body: Value) -> Vec<Value> {
    let url = format!("{}/api/v1/tenants/acme/messages", app.base);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, body) = (app.http.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                http.post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap()["id"].clone());
    }
    ids
}

herald_test! {
async fn resend_cancel_and_endpoint_deletion() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.default_reply("/later", Reply::status(500));
    app.tenant("acme").await;
    let ok = app
        .endpoint("acme", json!({"url": rx.url("/ok"), "event_types": ["ok"]}))
        .await;
    let id = app.message("acme", "ok", json!({})).await;
    app.settled("acme", &id, "succeeded").await;
    let (status, body) = app
        .post(
            &format!("/api/v1/tenants/acme/messages/{id}/resend"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let got = rx.wait_for("/ok", 2).await;
    assert_eq!(got[0].header("x-event-id"), got[1].header("x-event-id"));
    let (status, _) = app
        .post(
            &format!("/api/v1/tenants/acme/messages/{id}/resend"),
            json!({"endpoint_id": ok}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    rx.wait_for("/ok", 3).await;

    // A pending delivery (retrying in 60 s) is cancelled.
    app.endpoint("acme", json!({"url": rx.url("/later"), "event_types": ["later"], "retry_policy": {"delays_seconds": [60]}})).await;
    let id = app.message("acme", "later", json!({})).await;
    rx.wait_for("/later", 1).await;
    let pending = eventually(
        "the retry to be scheduled",
        Duration::from_secs(10),
        || async {
            let (_, m) = app
                .get(&format!("/api/v1/tenants/acme/messages/{id}"))
                .await;
            (m["deliveries"][0]["attempts"] == 1).then_some(m)
        },
    )
    .await;
    assert_eq!(pending["status"], "pending");
    assert!(pending["deliveries"][0]["next_attempt_at"].is_string());
    let (status, body) = app
        .post(
            &format!("/api/v1/tenants/acme/messages/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["cancelled"].as_array().unwrap().len(), 1);
    let (_, m) = app
        .get(&format!("/api/v1/tenants/acme/messages/{id}"))
        .await;
    assert_eq!(m["deliveries"][0]["status"], "cancelled");
    assert_eq!(m["status"], "failed");

    // Deleting an endpoint cancels its pending deliveries.
    let doomed = app.endpoint("acme", json!({"url": rx.url("/later"), "event_types": ["doomed"], "retry_policy": {"delays_seconds": [60]}})).await;
    let id = app.message("acme", "doomed", json!({})).await;
    let (status, _) = app
        .delete(&format!("/api/v1/tenants/acme/endpoints/{doomed}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, m) = app
        .get(&format!("/api/v1/tenants/acme/messages/{id}"))
        .await;
    assert_eq!(m["deliveries"][0]["status"], "cancelled");
    let (status, _) = app
        .get(&format!("/api/v1/tenants/acme/endpoints/{doomed}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
}

herald_test! {
async fn ad_hoc_callbacks_get_retries_and_the_attempt_log() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.script("/cb", [Reply::status(502)]);
    let (status, body) = app
        .post(
            "/api/v1/callbacks",
            json!({"target_url": rx.url("/cb"), "target_method": "PUT", "hmac_secret": "s3cret-key",
            "payload": {"job": 1}, "retry_policy": {"delays_seconds": [0.1]}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().unwrap();
    let message = app.settled("default", id, "succeeded").await;
    assert_eq!(message["deliveries"][0]["attempts"], 2);
    assert_eq!(message["deliveries"][0]["endpoint_id"], Value::Null);
    assert_eq!(message["deliveries"][0]["url"], rx.url("/cb").as_str());
    let got = rx.wait_for("/cb", 2).await;
    assert_eq!(got[1].method, "PUT");
    let (_, body) = app
        .post(
            "/api/v1/callbacks",
            json!({"target_url": "ftp://x", "hmac_secret": "k", "payload": {}}),
        )
        .await;
    assert_eq!(body["error"]["field"], "target_url");
}
}

herald_test! {
async fn graceful_shutdown_lets_requests_in_flight_finish() {
    let mut app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.default_reply(
        "/slow",
        Reply::status(200).delay(Duration::from_millis(700)),
    );
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/slow")})).await;
    let id = app.message("acme", "a", json!({})).await;
    rx.wait_for("/slow", 1).await;
    let store = app.engine.store().clone();
    app.stop().await;
    let message_id = herald_core::MessageId::parse(&id, "id").unwrap();
    let deliveries = store.message_deliveries(&herald_core::TenantId::parse("acme", "tenant").unwrap(), &message_id).await.unwrap();
    assert_eq!(
        deliveries[0].status,
        herald_core::delivery::DeliveryStatus::Succeeded
    );
}
}
