//! The SSRF guard (literal addresses refused when saved, names refused on the
//! connection actually made, the allow-list opening them) and hostile endpoints
//! (an endless body, a redirect to the metadata service).

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Receiver, Reply};

herald_test! {
async fn internal_addresses_are_refused_when_saved() {
    let app = spawn_app_with(|c| c.allow_networks = vec![]).await;
    app.tenant("acme").await;
    for url in [
        "http://127.0.0.1/", "http://127.1/", "http://0x7f000001/", "http://2130706433/", "http://[::1]/",
        "http://[::ffff:127.0.0.1]/", "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/", "http://224.0.0.1/", "http://0.0.0.0/",
        "http://[fe80::1]/", "http://[fc00::1]/", "http://[::]/",
    ] {
        let (status, answer) = app.post("/api/v1/tenants/acme/endpoints", json!({"url": url})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {answer}");
        assert_eq!(answer["error"]["field"], "url", "{url}");
    }
    let (status, answer) = app.post("/api/v1/callbacks", json!({"target_url": "http://169.254.169.254/", "hmac_secret": "k", "payload": {}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["field"], "target_url");
    let (status, _) = app.post("/api/v1/tenants/acme/endpoints", json!({"url": "https://example.com/hook"})).await;
    assert_eq!(status, StatusCode::CREATED, "public addresses are fine");
}
}

herald_test! {
async fn credentials_in_a_url_are_refused_so_they_are_never_shown() {
    let app = spawn_app().await;
    app.tenant("acme").await;
    let (status, answer) = app
        .post("/api/v1/tenants/acme/endpoints", json!({"url": "https://user:pw-very-secret@example.com/hook"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "url");
    assert!(!answer.to_string().contains("pw-very-secret"), "{answer}");
    let (status, answer) = app
        .post("/api/v1/callbacks", json!({"target_url": "https://user:pw-very-secret@example.com/cb", "hmac_secret": "k", "payload": {}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "target_url");
    let (_, endpoints) = app.get("/api/v1/tenants/acme/endpoints").await;
    assert!(!endpoints.to_string().contains("pw-very-secret"));
}
}

herald_test! {
async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
    let rx = Receiver::start().await;
    let url = format!("http://localhost:{}/named", rx.addr.port());
    let guarded = spawn_app_with(|c| c.allow_networks = vec![]).await;
    guarded.tenant("acme").await;
    guarded.endpoint("acme", json!({"url": url, "retry_policy": {"delays_seconds": [0.1]}})).await;
    let id = guarded.message("acme", "a", json!({})).await;
    guarded.settled("acme", &id, "failed").await;
    let (_, attempts) = guarded.get(&format!("/api/v1/tenants/acme/messages/{id}/attempts")).await;
    assert_eq!(attempts["data"].as_array().unwrap().len(), 1, "refused for good, not retried");
    assert_eq!(attempts["data"][0]["error_kind"], "blocked_address");
    assert!(rx.requests("/named").is_empty());

    let open = spawn_app().await; // allow-list 127.0.0.0/8
    open.tenant("acme").await;
    open.endpoint("acme", json!({"url": url})).await;
    let id = open.message("acme", "a", json!({})).await;
    open.settled("acme", &id, "succeeded").await;
    assert_eq!(rx.requests("/named").len(), 1);
}
}

herald_test! {
async fn an_endless_body_and_a_redirect_to_metadata_do_no_harm() {
    // A receiver that answers 200 and then streams for ever.
    let endless = axum::Router::new().fallback(|| async {
        let chunk = axum::body::Bytes::from(vec![b'x'; 16 * 1024]);
        let chunks = futures_lite::StreamExt::map(futures_lite::stream::repeat(chunk), Ok::<_, std::io::Error>);
        axum::response::Response::new(axum::body::Body::from_stream(chunks))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endless_url = format!("http://{}/endless", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, endless).await });
    let rx = Receiver::start().await;
    rx.default_reply("/redirect", Reply::status(302).header("location", "http://169.254.169.254/latest/meta-data/"));

    let app = spawn_app().await;
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": endless_url, "event_types": ["endless"], "timeout_seconds": 5})).await;
    app.endpoint("acme", json!({"url": rx.url("/redirect"), "event_types": ["redirect"], "retry_policy": {"delays_seconds": [0.1]}})).await;
    let endless_id = app.message("acme", "endless", json!({})).await;
    let redirect_id = app.message("acme", "redirect", json!({})).await;

    app.settled("acme", &endless_id, "succeeded").await;
    let (_, attempts) = app.get(&format!("/api/v1/tenants/acme/messages/{endless_id}/attempts")).await;
    let body = attempts["data"][0]["response_body"].as_str().unwrap();
    assert_eq!(body.len(), 4096, "the body is read up to its bound, then dropped");
    assert!(attempts["data"][0]["duration_ms"].as_u64().unwrap() < 5_000);

    app.settled("acme", &redirect_id, "failed").await;
    let (_, attempts) = app.get(&format!("/api/v1/tenants/acme/messages/{redirect_id}/attempts")).await;
    for attempt in attempts["data"].as_array().unwrap() {
        assert_eq!(attempt["response_status"], 302);
        assert!(attempt["response_headers"].to_string().contains("169.254.169.254"), "Location is kept in the log");
    }
    assert_eq!(rx.requests("/redirect").len(), 2, "tried and retried, never followed");
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    let _ = Duration::ZERO;
}
}

herald_test! {
async fn deep_json_and_unknown_fields_are_refused_and_the_service_stays_ready() {
    let app = spawn_app().await;
    app.tenant("acme").await;
    let deep = format!("{{\"event_type\":\"a\",\"payload\":{}{}}}", "[".repeat(5_000), "]".repeat(5_000));
    let response = app
        .http
        .post(format!("{}/api/v1/tenants/acme/messages", app.base))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400, "nesting past the parser's depth limit is refused");
    let (status, answer) = app.post("/api/v1/tenants/acme/messages", json!({"event_type": "a", "payload": {}, "sneaky": true})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"]["message"].as_str().unwrap().contains("sneaky"));
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
}
}

herald_test! {
async fn a_client_that_sends_its_headers_too_slowly_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|c| c.client_header_timeout_seconds = 0.5).await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /api/v1/tenants HTTP/1.1\r\nHost: herald\r\nX-Slow: ").await.unwrap();
    let mut buf = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(ended.is_ok(), "the connection is closed, not held open");
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "and the service stays ready");
}
}

herald_test! {
async fn a_certificate_that_does_not_verify_is_an_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An HTTPS receiver with a self-signed certificate nobody trusts.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut buf = [0u8; 1024];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                }
            });
        }
    });
    let app = spawn_app().await;
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": format!("https://localhost:{port}/tls"), "retry_policy": {"delays_seconds": [0.1]}})).await;
    let id = app.message("acme", "a", json!({})).await;
    app.settled("acme", &id, "failed").await;
    let (_, attempts) = app.get(&format!("/api/v1/tenants/acme/messages/{id}/attempts")).await;
    for attempt in attempts["data"].as_array().unwrap() {
        assert_eq!(attempt["error_kind"], "tls", "{attempt}");
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 0, "no request got past the handshake");
}
}
