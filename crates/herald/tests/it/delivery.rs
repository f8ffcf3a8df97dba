//! Delivery outcomes (SPEC §3) and retry policies, through a real receiver.
//! Dead letters and fan-out are beside it (`dead_letters.rs`, `fan_out.rs`).

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Receiver, Reply};

const FAST_RETRIES: &str = r#"{"delays_seconds": [0.1, 0.1]}"#;

pub(crate) fn fast() -> Value {
    serde_json::from_str(FAST_RETRIES).unwrap()
}

pub(crate) async fn attempts(
    app: &crate::helpers::TestApp,
    tenant: &str,
    message: &str,
) -> Vec<Value> {
    let (status, body) = app
        .get(&format!(
            "/api/v1/tenants/{tenant}/messages/{message}/attempts"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut list = body["data"].as_array().unwrap().clone();
    list.reverse();
    list
}

herald_test! {
async fn a_2xx_succeeds_on_the_first_attempt() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/ok")})).await;
    let id = app
        .message(
            "acme",
            "user.created",
            json!({"b": 1, "a": {"d": 2, "c": 3}}),
        )
        .await;
    let message = app.settled("acme", &id, "succeeded").await;
    assert_eq!(message["deliveries"][0]["attempts"], 1);
    let got = rx.wait_for("/ok", 1).await;
    assert_eq!(&got[0].body[..], br#"{"a":{"c":3,"d":2},"b":1}"#);
    assert_eq!(got[0].header("x-event-id"), Some(id.as_str()));
    assert_eq!(got[0].header("x-event-type"), Some("user.created"));
    assert_eq!(got[0].header("x-tenant-id"), Some("acme"));
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert!(got[0].header("user-agent").unwrap().starts_with("herald/"));
    let ts: i64 = got[0].header("x-timestamp").unwrap().parse().unwrap();
    assert!((ts - chrono::Utc::now().timestamp()).abs() < 60);
    let log = attempts(&app, "acme", &id).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["response_status"], 200);
    assert_eq!(log[0]["request_body"], r#"{"a":{"c":3,"d":2},"b":1}"#);
    assert_eq!(log[0]["response_body"], "ok");
    assert_eq!(log[0]["outcome"], "success");
}
}

herald_test! {
async fn other_4xx_fail_permanently_without_retry() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.default_reply("/gone", Reply::status(404));
    app.tenant("acme").await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/gone"), "retry_policy": fast()}),
    )
    .await;
    let id = app.message("acme", "a", json!({})).await;
    let message = app.settled("acme", &id, "failed").await;
    assert_eq!(message["deliveries"][0]["status"], "dead");
    assert_eq!(message["deliveries"][0]["attempts"], 1);
    let (_, dead) = app.get("/api/v1/tenants/acme/dead-letters").await;
    assert!(
        dead["data"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("permanent failure: HTTP 404"),
        "{dead}"
    );
    assert_eq!(rx.requests("/gone").len(), 1);
}
}

herald_test! {
async fn five_xx_3xx_408_and_refused_connections_are_retried() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    for (path, reply) in [
        ("/500", Reply::status(500)),
        (
            "/302",
            Reply::status(302).header("location", "http://10.0.0.1/"),
        ),
        ("/408", Reply::status(408)),
    ] {
        rx.script(path, [reply]);
        let ep = app.endpoint("acme", json!({"url": rx.url(path), "retry_policy": fast(), "event_types": [format!("t{}", &path[1..])]})).await;
        let id = app
            .message("acme", &format!("t{}", &path[1..]), json!({"p": path}))
            .await;
        let message = app.settled("acme", &id, "succeeded").await;
        assert_eq!(message["deliveries"][0]["attempts"], 2, "{path}: {message}");
        assert_eq!(rx.requests(path).len(), 2, "{path}");
        let log = attempts(&app, "acme", &id).await;
        assert_eq!(log[0]["outcome"], "retry", "{path}");
        assert_eq!(log[0]["endpoint_id"], ep.as_str());
        if path == "/302" {
            let location = log[0]["response_headers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h[0] == "location");
            assert!(location, "the attempt log keeps Location: {log:?}");
        }
    }
    // Nothing listens on port 1: connection refused, retried, then dead.
    app.endpoint(
        "acme",
        json!({"url": "http://127.0.0.1:1/", "retry_policy": fast(), "event_types": ["refused"]}),
    )
    .await;
    let id = app.message("acme", "refused", json!({})).await;
    let message = app.settled("acme", &id, "failed").await;
    assert_eq!(message["deliveries"][0]["attempts"], 3);
    let log = attempts(&app, "acme", &id).await;
    assert_eq!(log[0]["error_kind"], "connect");
}
}

herald_test! {
async fn a_slow_answer_times_out_and_is_retried() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.script("/slow", [Reply::status(200).delay(Duration::from_secs(3))]);
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/slow"), "timeout_seconds": 0.3, "connect_timeout_seconds": 0.3, "retry_policy": fast()})).await;
    let id = app.message("acme", "a", json!({})).await;
    let message = app.settled("acme", &id, "succeeded").await;
    assert_eq!(message["deliveries"][0]["attempts"], 2);
    let log = attempts(&app, "acme", &id).await;
    assert_eq!(log[0]["error_kind"], "timeout");
}
}

herald_test! {
async fn retry_after_on_429_is_honoured() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.script("/busy", [Reply::status(429).header("retry-after", "1")]);
    app.tenant("acme").await;
    app.endpoint(
        "acme",
        json!({"url": rx.url("/busy"), "retry_policy": fast()}),
    )
    .await;
    let id = app.message("acme", "a", json!({})).await;
    app.settled("acme", &id, "succeeded").await;
    let got = rx.requests("/busy");
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 replaced the 0.1 s delay, waited {gap:?}"
    );
}
}

herald_test! {
async fn both_policy_forms_spend_their_budget_then_dead_letter() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.default_reply("/down", Reply::status(503));
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/down"), "event_types": ["schedule"], "retry_policy": {"delays_seconds": [0.1, 0.2, 0.1]}})).await;
    app.endpoint("acme", json!({"url": rx.url("/down"), "event_types": ["exp"],
        "retry_policy": {"max_retries": 2, "initial_delay_seconds": 0.1, "backoff_multiplier": 2, "max_delay_seconds": 1, "jitter": false}})).await;
    let scheduled = app.message("acme", "schedule", json!({})).await;
    let exponential = app.message("acme", "exp", json!({})).await;
    let a = app.settled("acme", &scheduled, "failed").await;
    let b = app.settled("acme", &exponential, "failed").await;
    assert_eq!(
        a["deliveries"][0]["attempts"], 4,
        "1 try + 3 scheduled retries"
    );
    assert_eq!(b["deliveries"][0]["attempts"], 3, "1 try + max_retries 2");
    let log = attempts(&app, "acme", &exponential).await;
    let t: Vec<chrono::DateTime<chrono::Utc>> = log
        .iter()
        .map(|a| a["created_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        (t[2] - t[1]).num_milliseconds() >= 150,
        "the second retry waits about twice the first: {t:?}"
    );
    let (_, dead) = app.get("/api/v1/tenants/acme/dead-letters").await;
    let reasons: Vec<&str> = dead["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2);
    assert!(
        reasons
            .iter()
            .all(|r| r.starts_with("retries exhausted") && r.contains("HTTP 503")),
        "{reasons:?}"
    );
}
}
