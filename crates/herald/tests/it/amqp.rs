//! Seed 000's AMQP contract against the real RabbitMQ: a SendCallback published as
//! the seed says arrives signed; a burst arrives whole; poison messages neither
//! block the queue nor vanish unaccounted; PublishEvent fans out; kill -9 right
//! after publishing loses nothing.

use std::collections::HashSet;
use std::time::Duration;

use lapin::types::FieldTable;
use serde_json::json;

use crate::helpers::{eventually, free_port, spawn_app_with, Broker, Process, Receiver, Reply};

async fn app_on(queue: &str, dlx: Option<&str>) -> crate::helpers::TestApp {
    let url =
        std::env::var("HERALD_TEST_AMQP_URL").expect("HERALD_TEST_AMQP_URL names the test broker");
    let (queue, dlx) = (queue.to_string(), dlx.map(String::from));
    let app = spawn_app_with(move |c| {
        c.amqp_url = Some(serde_json::from_value(json!(url)).unwrap());
        c.amqp_queue = queue;
        c.amqp_dead_letter_exchange = dlx;
    })
    .await;
    eventually(
        "the consumer to connect",
        Duration::from_secs(20),
        || async {
            let (status, body) = app.get("/readyz").await;
            (status.is_success() && body["broker"] == "connected").then_some(())
        },
    )
    .await;
    app
}

async fn metric(app: &crate::helpers::TestApp, line: &str) -> bool {
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines().any(|l| l == line)
}

amqp_test! {
async fn a_send_callback_published_as_seed_000_says_arrives_signed() {
    let queue = Broker::queue_name("callbacks");
    let app = app_on(&queue, None).await;
    let broker = Broker::connect().await;
    let rx = Receiver::start().await;
    let body = json!({"target_url": rx.url("/partner"), "target_method": "POST", "hmac_secret": "your-secret-key",
        "payload": {"b": 1, "a": {"d": 2, "c": 3}}});
    broker.publish(&queue, "SendCallback", "application/json", body.to_string().as_bytes()).await;
    let got = rx.wait_for("/partner", 1).await;
    assert_eq!(got[0].method, "POST");
    assert_eq!(&got[0].body[..], br#"{"a":{"c":3,"d":2},"b":1}"#);
    assert_eq!(got[0].header("x-signature"), Some("224dfbea254c1f6c0a40e09ebb33691501b8e779b403e567aa5a19bb72ef01aa"));
    // target_method is optional and defaults to POST; others are honoured.
    let put = json!({"target_url": rx.url("/put"), "target_method": "PUT", "hmac_secret": "k", "payload": {}});
    broker.publish(&queue, "SendCallback", "application/json", put.to_string().as_bytes()).await;
    assert_eq!(rx.wait_for("/put", 1).await[0].method, "PUT");
    eventually("the queue to drain", Duration::from_secs(10), || async { (broker.depth(&queue).await == 0).then_some(()) }).await;
    assert!(metric(&app, "herald_amqp_messages_total{outcome=\"accepted\"} 2").await);
}
}

amqp_test! {
async fn a_burst_of_a_thousand_arrives_whole_and_is_acked() {
    let queue = Broker::queue_name("burst");
    let mut app = app_on(&queue, None).await;
    let broker = Broker::connect().await;
    let rx = Receiver::start().await;
    for n in 0..1_000 {
        let body = json!({"target_url": rx.url("/burst"), "hmac_secret": "k", "payload": {"n": n}});
        broker.publish(&queue, "SendCallback", "application/json", body.to_string().as_bytes()).await;
    }
    let got = rx.wait_for_within("/burst", 1_000, Duration::from_secs(60)).await;
    let seen: HashSet<i64> = got.iter().map(|r| r.json()["n"].as_i64().unwrap()).collect();
    assert_eq!(seen.len(), 1_000);
    // Acks go in runs (`multiple`): once all are counted, closing the consumer
    // must give nothing back to the queue.
    eventually("every message to be acked", Duration::from_secs(10), || async {
        metric(&app, "herald_amqp_messages_total{outcome=\"accepted\"} 1000").await.then_some(())
    })
    .await;
    app.stop().await;
    assert_eq!(broker.depth(&queue).await, 0, "nothing went back to the queue unacked");
}
}

amqp_test! {
async fn poison_messages_are_dead_lettered_and_do_not_block_the_queue() {
    let queue = Broker::queue_name("poison");
    let dlx = format!("{queue}.dlx");
    let broker = Broker::connect().await;
    broker
        .channel
        .exchange_declare(dlx.as_str().into(), lapin::ExchangeKind::Fanout, lapin::options::ExchangeDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    let parked = format!("{queue}.parked");
    broker.declare(&parked, FieldTable::default()).await;
    broker
        .channel
        .queue_bind(parked.as_str().into(), dlx.as_str().into(), "".into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    let app = app_on(&queue, Some(&dlx)).await;
    let rx = Receiver::start().await;
    let poison: Vec<(&str, &str, String)> = vec![
        ("SendCallback", "application/json", "{not json".into()),
        ("SendCallback", "application/json", json!({"target_url": rx.url("/x"), "payload": {}}).to_string()),
        ("Unknown", "application/json", json!({"target_url": rx.url("/x"), "hmac_secret": "k", "payload": {}}).to_string()),
        ("SendCallback", "application/json", json!({"target_url": "ftp://nowhere", "hmac_secret": "k", "payload": {}}).to_string()),
        ("SendCallback", "text/plain", json!({"target_url": rx.url("/x"), "hmac_secret": "k", "payload": {}}).to_string()),
        ("PublishEvent", "application/json", json!({"tenant": "nobody", "event_type": "a", "payload": {}}).to_string()),
    ];
    for (kind, content_type, body) in &poison {
        broker.publish(&queue, kind, content_type, body.as_bytes()).await;
    }
    let good = json!({"target_url": rx.url("/good"), "hmac_secret": "k", "payload": {"ok": true}});
    broker.publish(&queue, "SendCallback", "application/json", good.to_string().as_bytes()).await;
    rx.wait_for("/good", 1).await;
    eventually("the poison to reach the dead-letter exchange", Duration::from_secs(10), || async {
        (broker.depth(&parked).await == 6).then_some(())
    })
    .await;
    assert!(rx.requests("/x").is_empty());
    assert!(metric(&app, "herald_amqp_messages_total{outcome=\"rejected\"} 6").await);
    let (status, _) = app.get("/readyz").await;
    assert!(status.is_success(), "the consumer goes on");
}
}

amqp_test! {
async fn publish_event_fans_out_to_the_tenant_s_endpoints() {
    let queue = Broker::queue_name("events");
    let app = app_on(&queue, None).await;
    let broker = Broker::connect().await;
    let rx = Receiver::start().await;
    app.tenant("acme").await;
    app.endpoint("acme", json!({"url": rx.url("/users"), "event_types": ["user.*"]})).await;
    app.endpoint("acme", json!({"url": rx.url("/all")})).await;
    let body = json!({"tenant": "acme", "event_type": "user.created", "payload": {"id": 1}, "idempotency_key": "u-1"});
    broker.publish(&queue, "PublishEvent", "application/json", body.to_string().as_bytes()).await;
    broker.publish(&queue, "PublishEvent", "application/json", body.to_string().as_bytes()).await;
    rx.wait_for("/users", 1).await;
    rx.wait_for("/all", 1).await;
    let (_, list) = app.get("/api/v1/tenants/acme/messages").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "the idempotency key holds across AMQP too");
}
}

amqp_test! {
async fn kill_9_right_after_publishing_loses_nothing() {
    let url = std::env::var("HERALD_TEST_AMQP_URL").unwrap();
    let queue = Broker::queue_name("crash");
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("herald.db").display());
    // Four requests in flight, 100 ms each: the kill lands long before the end.
    let env = [("HERALD_AMQP_URL", url.as_str()), ("HERALD_AMQP_QUEUE", queue.as_str()), ("HERALD_ADHOC_MAX_IN_FLIGHT", "4")];
    let port = free_port();
    let broker = Broker::connect().await;
    broker.declare(&queue, FieldTable::default()).await;
    let rx = Receiver::start().await;
    rx.default_reply("/crash", Reply::status(200).delay(Duration::from_millis(100)));
    let mut herald = Process::start_on(port, &db, &[], &env).await;
    for n in 0..300 {
        let body = json!({"target_url": rx.url("/crash"), "hmac_secret": "k", "payload": {"n": n}});
        broker.publish(&queue, "SendCallback", "application/json", body.to_string().as_bytes()).await;
    }
    rx.wait_for("/crash", 10).await;
    herald.kill();
    let before = rx.requests("/crash").len();
    assert!(before < 300, "the kill came mid-way ({before} of 300 delivered)");
    let _herald = Process::start_on(port, &db, &[], &env).await;
    eventually("every published message to arrive", Duration::from_secs(60), || async {
        let seen: HashSet<i64> = rx.requests("/crash").iter().map(|r| r.json()["n"].as_i64().unwrap()).collect();
        (seen.len() == 300).then_some(())
    })
    .await;
}
}
