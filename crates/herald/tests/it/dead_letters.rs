//! Dead letters (SPEC §3): replay with a fresh budget, bulk replay, and disabling an
//! endpoint once its budget is spent.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::delivery::{attempts, fast};
use crate::helpers::{spawn_app, Receiver, Reply};

herald_test! {
async fn a_dead_letter_replays_with_a_fresh_budget_and_keeps_its_attempts() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.script("/flaky", (0..3).map(|_| Reply::status(500)));
    app.tenant("acme").await;
    let ep = app
        .endpoint(
            "acme",
            json!({"url": rx.url("/flaky"), "retry_policy": fast()}),
        )
        .await;
    let id = app.message("acme", "a", json!({})).await;
    app.settled("acme", &id, "failed").await;
    let (_, dead) = app.get("/api/v1/tenants/acme/dead-letters").await;
    let entry = &dead["data"][0];
    assert_eq!(entry["message_id"], id.as_str());
    assert_eq!(entry["endpoint_id"], ep.as_str());
    assert_eq!(entry["url"], rx.url("/flaky").as_str());
    assert_eq!(entry["event_type"], "a");
    assert_eq!(entry["attempts"], 3);
    assert_eq!(entry["replayable"], true);
    assert!(entry["dead_at"].is_string());
    let dlv = entry["id"].as_str().unwrap();
    assert!(dlv.starts_with("dlv_"));

    let (status, replayed) = app
        .post(
            &format!("/api/v1/tenants/acme/dead-letters/{dlv}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replayed}");
    let message = app.settled("acme", &id, "succeeded").await;
    assert_eq!(message["deliveries"][0]["attempts"], 4);
    assert_eq!(
        attempts(&app, "acme", &id).await.len(),
        4,
        "earlier attempts are kept"
    );
    let (_, dead) = app.get("/api/v1/tenants/acme/dead-letters").await;
    assert_eq!(dead["data"].as_array().unwrap().len(), 0);
    // Replaying what is not dead is a conflict; an unknown id is 404.
    let (status, _) = app
        .post(
            &format!("/api/v1/tenants/acme/dead-letters/{dlv}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app
        .post(
            "/api/v1/tenants/acme/dead-letters/dlv_01J00000000000000000000000/replay",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
}

herald_test! {
async fn bulk_replay_takes_an_endpoints_dead_letters() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.script("/a", (0..3).map(|_| Reply::status(404)));
    rx.script("/b", (0..2).map(|_| Reply::status(404)));
    app.tenant("acme").await;
    let a = app
        .endpoint("acme", json!({"url": rx.url("/a"), "event_types": ["a"]}))
        .await;
    app.endpoint("acme", json!({"url": rx.url("/b"), "event_types": ["b"]}))
        .await;
    let mut ids = Vec::new();
    for kind in ["a", "a", "a", "b", "b"] {
        ids.push(app.message("acme", kind, json!({})).await);
    }
    for id in &ids {
        app.settled("acme", id, "failed").await;
    }
    let (status, body) = app
        .post(
            "/api/v1/tenants/acme/dead-letters/replay",
            json!({"endpoint_id": a}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["replayed"], 3);
    for id in &ids[..3] {
        app.settled("acme", id, "succeeded").await;
    }
    let (_, dead) = app.get("/api/v1/tenants/acme/dead-letters").await;
    assert_eq!(dead["data"].as_array().unwrap().len(), 2);
    let (_, body) = app
        .post(
            "/api/v1/tenants/acme/dead-letters/replay",
            json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(body["replayed"], 2);
}
}

herald_test! {
async fn disable_endpoint_on_exhaustion_dead_letters_the_queue() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.default_reply(
        "/dying",
        Reply::status(500).delay(Duration::from_millis(100)),
    );
    app.tenant("acme").await;
    let ep = app
        .endpoint(
            "acme",
            json!({"url": rx.url("/dying"), "on_exhausted": "disable_endpoint", "mode": "ordered",
            "retry_policy": {"delays_seconds": [0.1]}}),
        )
        .await;
    let first = app.message("acme", "a", json!({"n": 1})).await;
    let second = app.message("acme", "a", json!({"n": 2})).await;
    app.settled("acme", &first, "failed").await;
    let other = app.settled("acme", &second, "failed").await;
    assert_eq!(other["deliveries"][0]["status"], "dead");
    assert_eq!(
        other["deliveries"][0]["attempts"], 0,
        "queued behind the head, never tried"
    );
    let (_, endpoint) = app
        .get(&format!("/api/v1/tenants/acme/endpoints/{ep}"))
        .await;
    assert_eq!(endpoint["active"], false);
    assert!(endpoint["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("retries exhausted"));
    // A disabled endpoint gets no new deliveries.
    let third = app.message("acme", "a", json!({"n": 3})).await;
    let (_, message) = app
        .get(&format!("/api/v1/tenants/acme/messages/{third}"))
        .await;
    assert_eq!(message["deliveries"].as_array().unwrap().len(), 0);
}
}
