//! herald's AMQP adapter: consumes seed 000's contract from RabbitMQ.
//!
//! Messages on the durable queue (default `callbacks`, default exchange, routing key
//! = queue name) with `type: SendCallback` (body `target_url`, `target_method`,
//! `hmac_secret`, `payload`) become ad-hoc callbacks; `type: PublishEvent` (body
//! `tenant`, `event_type`, `payload`, `idempotency_key`?) fans out to the tenant's
//! endpoints. Both go through the same engine functions as HTTP.
//!
//! A message is acked only after its ingest is committed (a run of committed
//! messages with one multiple ack, see [`settle`]). A message that can never
//! be ingested (not JSON, a missing field, an unknown type, a bad URL, an unknown
//! tenant) is rejected without requeue (to the dead-letter exchange when one is
//! configured), logged and counted, and the consumer goes on. When the store fails,
//! the message is requeued after a pause. A lost connection is retried with capped
//! exponential backoff and jitter, counted in `amqp_reconnects_total`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use herald_core::message::{CallbackSpec, MessageSpec};
use herald_core::TenantId;
use herald_engine::{Engine, EngineError};
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use serde::Deserialize;
use settle::{Fate, Report};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod settle;

/// Where and how to consume.
#[derive(Clone, Debug)]
pub struct AmqpConfig {
    pub url: String,
    pub queue: String,
    /// Unacknowledged messages the broker may hand over at once.
    pub prefetch: u16,
    /// Where rejected messages go (`x-dead-letter-exchange` of the queue).
    pub dead_letter_exchange: Option<String>,
}

/// Whether the consumer holds a live link to the broker (for `/readyz`).
pub type BrokerLink = Arc<AtomicBool>;

/// `PublishEvent`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishEvent {
    tenant: String,
    event_type: String,
    payload: serde_json::Value,
    idempotency_key: Option<String>,
    headers: Option<std::collections::BTreeMap<String, String>>,
}

/// What a broker message asks for.
#[derive(Debug)]
enum Request {
    Callback(CallbackSpec),
    Event(TenantId, MessageSpec),
}

/// Reads a broker message, or says why it can never be ingested.
fn parse(delivery: &Delivery) -> Result<Request, String> {
    let props = &delivery.properties;
    decode(
        props.content_type().as_ref().map(|c| c.as_str()),
        props.kind().as_ref().map(|k| k.as_str()),
        props.message_id().as_ref().map(|m| m.as_str().to_string()),
        &delivery.data,
    )
}

/// The pure half of [`parse`]: properties and body in, request or reason out.
fn decode(
    content_type: Option<&str>,
    kind: Option<&str>,
    message_id: Option<String>,
    data: &[u8],
) -> Result<Request, String> {
    if let Some(ct) = content_type {
        if !ct.starts_with("application/json") {
            return Err(format!("content_type `{ct}` is not application/json"));
        }
    }
    let kind = kind.ok_or("the message has no `type`")?;
    match kind {
        "SendCallback" => {
            let mut spec: CallbackSpec =
                serde_json::from_slice(data).map_err(|e| format!("SendCallback body: {e}"))?;
            spec.idempotency_key = spec.idempotency_key.or(message_id);
            Ok(Request::Callback(spec))
        }
        "PublishEvent" => {
            let body: PublishEvent =
                serde_json::from_slice(data).map_err(|e| format!("PublishEvent body: {e}"))?;
            let tenant = TenantId::parse(&body.tenant, "tenant").map_err(|e| e.to_string())?;
            Ok(Request::Event(
                tenant,
                MessageSpec {
                    event_type: body.event_type,
                    payload: body.payload,
                    idempotency_key: body.idempotency_key.or(message_id),
                    headers: body.headers,
                    context: None,
                    endpoint_ids: None,
                },
            ))
        }
        other => Err(format!(
            "unknown type `{other}` (expected SendCallback or PublishEvent)"
        )),
    }
}

async fn ingest(engine: &Engine, delivery: &Delivery) -> Fate {
    let request = match parse(delivery) {
        Ok(r) => r,
        Err(reason) => return Fate::Poison(reason),
    };
    let result = match request {
        Request::Callback(spec) => match spec.parse() {
            Ok((message, target)) => engine.callback(message, target).await.inspect(|i| {
                if i.created {
                    engine.metrics().ingested("amqp_callback");
                }
            }),
            Err(e) => return Fate::Poison(e.to_string()),
        },
        Request::Event(tenant, spec) => match spec.parse() {
            Ok(message) => engine.ingest(&tenant, message).await.inspect(|i| {
                if i.created {
                    engine.metrics().ingested("amqp_event");
                }
            }),
            Err(e) => return Fate::Poison(e.to_string()),
        },
    };
    match result {
        Ok(_) => Fate::Committed,
        Err(EngineError::Store(e)) => Fate::Retry(e.to_string()),
        Err(e) => Fate::Poison(e.to_string()),
    }
}

/// Ingests one broker message and reports its fate to the settling task.
async fn handle(engine: Engine, delivery: Delivery, settle: mpsc::UnboundedSender<Report>) {
    let fate = ingest(&engine, &delivery).await;
    if let Fate::Retry(_) = fate {
        // The store failed: give it a moment before the message comes back.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A closed settling task means the channel is gone: the broker redelivers.
    let _ = settle.send(Report::Ended(delivery.delivery_tag, fate, delivery.acker));
}

/// Why a connection's life ended, and whether it got as far as consuming.
struct Lost {
    consumed: bool,
    error: lapin::Error,
}

/// One connection's life: declare, consume until the link drops or `shutdown`.
async fn consume(
    engine: &Engine,
    config: &AmqpConfig,
    link: &BrokerLink,
    shutdown: &CancellationToken,
) -> Result<(), Lost> {
    let early = |error| Lost {
        consumed: false,
        error,
    };
    let connection = Connection::connect(&config.url, ConnectionProperties::default())
        .await
        .map_err(early)?;
    let channel = connection.create_channel().await.map_err(early)?;
    let mut arguments = FieldTable::default();
    if let Some(dlx) = &config.dead_letter_exchange {
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.as_str().into()),
        );
    }
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(config.queue.as_str().into(), options, arguments)
        .await
        .map_err(early)?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await
        .map_err(early)?;
    let mut consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            "herald".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(early)?;
    link.store(true, Ordering::Release);
    tracing::info!(queue = %config.queue, prefetch = config.prefetch, "consuming from AMQP");
    let handlers = TaskTracker::new();
    let (settle, reports) = mpsc::unbounded_channel();
    let settling = tokio::spawn(settle::run(reports, engine.metrics().clone()));
    let ended = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let _ = settle.send(Report::Received(delivery.delivery_tag));
                    handlers.spawn(handle(engine.clone(), delivery, settle.clone()));
                }
                Some(Err(error)) => break Err(Lost { consumed: true, error }),
                None => break Err(Lost {
                    consumed: true,
                    error: lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed)),
                }),
            }
        }
    };
    link.store(false, Ordering::Release);
    // Let what is being ingested finish and settle; the rest returns to the queue.
    handlers.close();
    handlers.wait().await;
    drop(settle);
    let _ = settling.await;
    if ended.is_ok() {
        let _ = connection.close(200, "herald is stopping".into()).await;
    }
    ended
}

/// Consumes until `shutdown`, reconnecting with capped, jittered backoff.
pub async fn run(
    engine: Engine,
    config: AmqpConfig,
    link: BrokerLink,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        match consume(&engine, &config, &link, &shutdown).await {
            Ok(()) => return,
            Err(Lost { consumed, error }) => {
                link.store(false, Ordering::Release);
                // A link that had come up starts its backoff afresh.
                failures = if consumed {
                    1
                } else {
                    failures.saturating_add(1)
                };
                tracing::warn!(error = %error, failures, "AMQP link lost; reconnecting");
            }
        }
        let base = Duration::from_millis(100) * 2u32.pow(failures.min(8));
        let capped = base.min(Duration::from_secs(30));
        let wait = capped.mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..1.0));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        engine.metrics().amqp_reconnects.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_000_body_decodes_and_poison_is_named() {
        let body = br#"{"target_url":"https://example.com/webhook","target_method":"POST","hmac_secret":"your-secret-key","payload":{}}"#;
        assert!(matches!(
            decode(Some("application/json"), Some("SendCallback"), None, body),
            Ok(Request::Callback(_))
        ));
        assert!(decode(Some("text/plain"), Some("SendCallback"), None, body)
            .unwrap_err()
            .contains("content_type"));
        assert!(decode(None, None, None, body).unwrap_err().contains("type"));
        assert!(decode(None, Some("Other"), None, body)
            .unwrap_err()
            .contains("unknown type"));
        assert!(decode(None, Some("SendCallback"), None, b"{").is_err());
    }

    proptest! {
        #[test]
        fn any_body_decodes_or_is_refused_without_panicking(kind in prop_oneof![Just("SendCallback".to_string()), Just("PublishEvent".to_string()), ".*"], data in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Request::Callback(spec)) = decode(None, Some(&kind), None, &data) {
                let _ = spec.parse();
            }
        }

        #[test]
        fn json_shaped_bodies_never_panic(url in ".*", secret in ".*", method in ".*", tenant in ".*") {
            let callback = serde_json::json!({"target_url": url, "target_method": method, "hmac_secret": secret, "payload": {"x": 1}});
            if let Ok(Request::Callback(spec)) = decode(None, Some("SendCallback"), None, callback.to_string().as_bytes()) {
                let _ = spec.parse();
            }
            let event = serde_json::json!({"tenant": tenant, "event_type": url, "payload": null});
            if let Ok(Request::Event(_, spec)) = decode(None, Some("PublishEvent"), None, event.to_string().as_bytes()) {
                let _ = spec.parse();
            }
        }
    }
}
