//! Signing schemes end to end (rotation, public keys, `herald verify`), body
//! templates, signing failures, and secrets kept out of the database and the logs.

use std::time::Duration;

use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{
    eventually, free_port, post_ok, spawn_app, test_schema, Process, Receiver, Recorded,
};

fn header_map(r: &Recorded) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in &r.headers {
        map.insert(
            http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    map
}

/// Runs `herald verify` on a received request; returns (valid, what it printed).
async fn herald_verify(
    scheme: &str,
    key: &str,
    request: &Recorded,
    body: Vec<u8>,
) -> (bool, String) {
    // `--key=` keeps a PEM's leading dashes from reading as a flag.
    let mut args = vec![
        "verify".to_string(),
        "--scheme".into(),
        scheme.into(),
        format!("--key={key}"),
    ];
    for (name, value) in &request.headers {
        args.push("--header".into());
        args.push(format!("{name}: {}", value.to_str().unwrap()));
    }
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(&args)
            .env_clear()
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&body).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

herald_test! {
async fn rotation_sends_both_signatures_then_only_the_new_one() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    let ep = app.endpoint("acme", json!({"url": rx.url("/rot")})).await;
    let secret_path = format!("/api/v1/tenants/acme/endpoints/{ep}/secret");
    let (_, before) = app.get(&secret_path).await;
    let old = before["secret"].as_str().unwrap().to_string();
    let (status, rotated) = app.post(&format!("{secret_path}/rotate"), json!({"grace_seconds": 2})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    let (_, served) = app.get(&secret_path).await;
    assert_eq!(served["secret"], new.as_str(), "the API answers the new secret");

    app.message("acme", "a", json!({"n": 1})).await;
    let got = rx.wait_for("/rot", 1).await;
    assert_eq!(got[0].header("webhook-signature").unwrap().split(' ').count(), 2);
    for secret in [&old, &new] {
        standardwebhooks::Webhook::new(secret).unwrap().verify(&got[0].body, &header_map(&got[0])).unwrap();
    }
    // Once the grace ends, only the new secret signs.
    let mut n = 1;
    let last = eventually("the old secret's grace to end", Duration::from_secs(10), || {
        n += 1;
        let (app, rx, n) = (&app, &rx, n);
        async move {
            app.message("acme", "a", json!({"n": n})).await;
            let got = rx.wait_for("/rot", n as usize).await;
            let last = got.last().unwrap().clone();
            (last.header("webhook-signature").unwrap().split(' ').count() == 1).then_some(last)
        }
    })
    .await;
    standardwebhooks::Webhook::new(&new).unwrap().verify(&last.body, &header_map(&last)).unwrap();
    assert!(standardwebhooks::Webhook::new(&old).unwrap().verify(&last.body, &header_map(&last)).is_err());
}
}

herald_test! {
async fn asymmetric_schemes_verify_with_the_served_public_key() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    for (scheme, path) in [("standard-webhooks-ed25519", "/ed"), ("rsa-sha256", "/rsa")] {
        let ep = app.endpoint("acme", json!({"url": rx.url(path), "signature": {"scheme": scheme}, "event_types": [&path[1..]]})).await;
        let (_, key) = app.get(&format!("/api/v1/tenants/acme/endpoints/{ep}/secret")).await;
        assert_eq!(key["scheme"], scheme);
        assert!(key.get("secret").is_none(), "a private key is never served: {key}");
        let public = key["public_key"].as_str().unwrap().to_string();
        app.message("acme", &path[1..], json!({"scheme": scheme})).await;
        let got = rx.wait_for(path, 1).await;
        let (valid, said) = herald_verify(scheme, &public, &got[0], got[0].body.to_vec()).await;
        assert!(valid, "{scheme}: {said}");
        let (valid, said) = herald_verify(scheme, &public, &got[0], br#"{"scheme":"forged"}"#.to_vec()).await;
        assert!(!valid && said.starts_with("invalid"), "{scheme}: {said}");
    }
}
}

herald_test! {
async fn templates_render_and_the_signature_covers_the_rendered_bytes() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    let template = r#"{"id": "{{message_id}}", "kind": "{{event_type}}", "result": {{payload.result_json}}, "note": "job {{job_id}}: {{payload.note}}"}"#;
    let ep = app
        .endpoint("acme", json!({"url": rx.url("/tpl"), "template": template, "event_types": ["job.*"],
            "signature": {"scheme": "hmac-sha256-hex", "secret": "template-secret"}}))
        .await;
    let (_, endpoint) = app.get(&format!("/api/v1/tenants/acme/endpoints/{ep}")).await;
    assert_eq!(endpoint["template"], template);
    let payload = json!({"job_id": 9, "result_json": {"rows": [1, 2]}, "note": "quote \" backslash \\ {{message_id}}"});
    let id = app.message("acme", "job.done", payload.clone()).await;
    let got = rx.wait_for("/tpl", 1).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body, json!({"id": id, "kind": "job.done", "result": {"rows": [1, 2]}, "note": format!("job 9: {}", payload["note"].as_str().unwrap())}));
    let mut mac = Hmac::<Sha256>::new_from_slice(b"template-secret").unwrap();
    mac.update(&got[0].body);
    assert_eq!(got[0].header("x-signature").unwrap(), hex::encode(mac.finalize().into_bytes()));

    let (status, answer) = app.post("/api/v1/tenants/acme/endpoints", json!({"url": rx.url("/bad"), "template": "{\"a\": {{nope}"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["field"], "template");
    // A field the payload lacks dead-letters the delivery with the reason.
    let id = app.message("acme", "job.failed", json!({"job_id": 1})).await;
    app.settled("acme", &id, "failed").await;
    let (_, dead) = app.get("/api/v1/tenants/acme/dead-letters").await;
    let reason = dead["data"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("template render failed") && reason.contains("result_json"), "{reason}");
}
}

herald_test! {
async fn a_key_that_cannot_sign_dead_letters_and_is_counted() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    let ep = app.endpoint("acme", json!({"url": rx.url("/never")})).await;
    // A stored key gone bad (the API refuses such keys; the store is trusted as is).
    let tenant = herald_core::TenantId::parse("acme", "t").unwrap();
    let id = herald_core::EndpointId::parse(&ep, "e").unwrap();
    let mut endpoint = (*app.engine.endpoint(&tenant, &id).await.unwrap()).clone();
    endpoint.signature.keys[0].secret = "whsec_!!!not-base64".into();
    app.engine.update_endpoint(endpoint).await.unwrap();
    let message = app.message("acme", "a", json!({})).await;
    app.settled("acme", &message, "failed").await;
    let (_, dead) = app.get("/api/v1/tenants/acme/dead-letters").await;
    assert!(dead["data"][0]["reason"].as_str().unwrap().starts_with("signing failed"), "{dead}");
    assert!(rx.requests("/never").is_empty());
    let metrics = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("hmac_errors_total 1"), "{metrics}");
}
}

herald_test! {
async fn secrets_never_reach_the_database_or_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let schema = test_schema().await;
    let url = match &schema {
        Some(s) => s.url(),
        None => format!("sqlite://{}", dir.path().join("herald.db").display()),
    };
    let log = dir.path().join("herald.log");
    let rx = Receiver::start().await;
    let herald = Process::start_logging(free_port(), &url, &[], &[("HERALD_LOG_LEVEL", "trace")], Some(&log)).await;
    let base = herald.base();
    let http = reqwest::Client::new();
    let secrets = [
        "hmac-plaintext-secret-1234",
        "bearer-plaintext-token-5678",
        "basic-plaintext-password-9012",
        "apikey-plaintext-value-3456",
        "adhoc-plaintext-secret-7890",
    ];
    post_ok(&http, &format!("{base}/api/v1/tenants"), json!({"id": "acme"})).await;
    let endpoints = [
        json!({"url": rx.url("/s1"), "signature": {"scheme": "hmac-sha256-hex", "secret": secrets[0]}}),
        json!({"url": rx.url("/s2"), "auth": {"type": "bearer", "token": secrets[1]}}),
        json!({"url": rx.url("/s3"), "auth": {"type": "basic", "username": "u", "password": secrets[2]}}),
        json!({"url": rx.url("/s4"), "auth": {"type": "api_key", "header_name": "X-Key", "key": secrets[3]}}),
    ];
    let mut whsec = Vec::new();
    for spec in endpoints {
        let ep = post_ok(&http, &format!("{base}/api/v1/tenants/acme/endpoints"), spec).await;
        let secret: Value = http.get(format!("{base}/api/v1/tenants/acme/endpoints/{}/secret", ep["id"].as_str().unwrap())).send().await.unwrap().json().await.unwrap();
        whsec.push(secret["secret"].as_str().unwrap().to_string());
    }
    post_ok(&http, &format!("{base}/api/v1/tenants/acme/messages"), json!({"event_type": "a", "payload": {}})).await;
    post_ok(&http, &format!("{base}/api/v1/callbacks"), json!({"target_url": rx.url("/s5"), "hmac_secret": secrets[4], "payload": {}})).await;
    for path in ["/s1", "/s2", "/s3", "/s4", "/s5"] {
        rx.wait_for(path, 1).await;
    }
    assert_eq!(rx.requests("/s2")[0].header("authorization"), Some(format!("Bearer {}", secrets[1]).as_str()));
    drop(herald);

    let mut stored = Vec::new();
    match &schema {
        None => {
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if path.to_string_lossy().contains("herald.db") && !path.to_string_lossy().ends_with(".key") {
                    stored.extend(std::fs::read(&path).unwrap());
                }
            }
        }
        Some(s) => {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&s.url()).await.unwrap();
            for table in ["tenants", "endpoints", "messages", "deliveries", "attempts"] {
                let text: Option<String> = sqlx::query_scalar(&format!("SELECT string_agg(t::text, ' ') FROM {table} t")).fetch_one(&pool).await.unwrap();
                stored.extend(text.unwrap_or_default().into_bytes());
            }
            pool.close().await;
        }
    }
    assert!(stored.len() > 1000, "the database holds the data ({} bytes read)", stored.len());
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.lines().count() > 3, "herald logged at trace level");
    let stored = String::from_utf8_lossy(&stored);
    for secret in secrets.iter().map(|s| s.to_string()).chain(whsec) {
        let needle = secret.trim_start_matches("whsec_");
        assert!(!stored.contains(needle), "the database holds `{secret}` in the clear");
        assert!(!logs.contains(needle), "the logs hold `{secret}`");
    }
}
}
