//! Delivery outcomes (SPEC §3), retry policies, dead letters and replay, fan-out,
//! idempotency, resend and cancel, through a real receiver.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, Receiver, Reply};

const FAST_RETRIES: &str = r#"{"delays_seconds": [0.1, 0.1]}"#;

fn fast() -> Value {
    serde_json::from_str(FAST_RETRIES).unwrap()
}

async fn attempts(app: &crate::helpers::TestApp, tenant: &str, message: &str) -> Vec<Value> {
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
    let deliveries = store.message_deliveries(&message_id).await.unwrap();
    assert_eq!(
        deliveries[0].status,
        herald_core::delivery::DeliveryStatus::Succeeded
    );
}
}
