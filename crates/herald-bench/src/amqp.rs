//! Scenario (e): SendCallbacks published to RabbitMQ as seed 000's producers do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::run::{payload, Sent};

/// Publishes `messages` SendCallbacks (seed 000's contract) to `queue`, with
/// publisher confirms, from `concurrency` channels.
pub(crate) async fn ingest(
    amqp_url: &str,
    queue: &str,
    target: &str,
    concurrency: usize,
    messages: usize,
) -> anyhow::Result<Sent> {
    let connection =
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await?;
    let connection = Arc::new(connection);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (connection, queue, target) =
            (connection.clone(), queue.to_string(), target.to_string());
        let step = concurrency;
        tasks.push(tokio::spawn(async move {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(lapin::options::ConfirmSelectOptions::default())
                .await?;
            let mut sent = Vec::new();
            let mut confirms = Vec::new();
            for n in (worker..messages).step_by(step) {
                let id = format!("amqp-{n}");
                let body = json!({"target_url": target, "hmac_secret": "bench-secret",
                                  "payload": payload(n), "headers": {"x-bench-id": id}});
                let properties = lapin::BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_type("SendCallback".into())
                    .with_delivery_mode(2);
                sent.push((id, Instant::now()));
                confirms.push(
                    channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            lapin::options::BasicPublishOptions::default(),
                            &serde_json::to_vec(&body)?,
                            properties,
                        )
                        .await?,
                );
                if confirms.len() >= 256 {
                    for confirm in confirms.drain(..) {
                        confirm.await?;
                    }
                }
            }
            for confirm in confirms {
                confirm.await?;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut sent = Sent::new();
    for t in tasks {
        sent.extend(t.await??);
    }
    connection.close(200, "bench done".into()).await?;
    Ok(sent)
}

/// When herald has committed and acknowledged `messages` broker messages, read
/// from its `herald_amqp_messages_total{outcome="accepted"}` every 250 ms (a
/// scrape counts the open deliveries: more often would slow herald down).
pub(crate) fn acked(
    herald: &crate::process::Herald,
    messages: usize,
) -> tokio::task::JoinHandle<anyhow::Result<Instant>> {
    let herald = herald.base.clone();
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let series = "herald_amqp_messages_total{outcome=\"accepted\"}";
            let accepted = crate::process::metric(&herald, series).await?;
            if accepted >= messages as f64 {
                return Ok(Instant::now());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {accepted} of {messages} acked"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

pub(crate) async fn delete_queue(amqp_url: &str, queue: &str) -> anyhow::Result<()> {
    let connection =
        lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .queue_delete(queue.into(), lapin::options::QueueDeleteOptions::default())
        .await?;
    connection.close(200, "bench done".into()).await?;
    Ok(())
}
