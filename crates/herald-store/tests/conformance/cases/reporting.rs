//! What is reported and kept: attempt listings, stats, the janitor's purge.

use std::sync::Arc;

use herald_core::delivery::DeliveryStatus;
use herald_store::prelude::*;
use herald_store::*;

use crate::fixtures::*;

pub async fn attempts_are_listed_with_filters(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let node = NodeId::new();
    let ep = endpoint(&store, &acme, false).await;
    let d = delivery(&store, &acme, Some(&ep.id), Some(&node)).await;
    let other = delivery(&store, &acme, None, Some(&node)).await;
    try_once(
        &store,
        &d,
        &node,
        1,
        NextState::Retry {
            at: 1,
            error: "HTTP 500".into(),
        },
    )
    .await;
    try_once(&store, &d, &node, 2, NextState::Succeeded).await;
    try_once(&store, &other, &node, 1, NextState::Succeeded).await;
    let all = store
        .list_attempts(&acme, AttemptFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(all.data.len(), 3);
    let by_endpoint = AttemptFilter {
        endpoint_id: Some(ep.id.clone()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_attempts(&acme, by_endpoint, PageRequest::default())
            .await
            .unwrap()
            .data
            .len(),
        2
    );
    let retries = AttemptFilter {
        outcome: Some("retry".into()),
        ..Default::default()
    };
    let found = store
        .list_attempts(&acme, retries, PageRequest::default())
        .await
        .unwrap();
    assert_eq!(found.data.len(), 1);
    let a = &found.data[0];
    assert_eq!(
        (a.attempt, a.response_status, a.duration_ms),
        (1, Some(500), 5)
    );
    assert_eq!(
        a.response_headers,
        vec![("content-type".to_string(), "text/plain".to_string())]
    );
    assert_eq!(a.request_body.as_deref(), Some(r#"{"a":1}"#));
    let by_message = AttemptFilter {
        message_id: Some(other.message_id.clone()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_attempts(&acme, by_message, PageRequest::default())
            .await
            .unwrap()
            .data
            .len(),
        1
    );
    // A delivery's attempts, newest first, a page at a time.
    let by_delivery = AttemptFilter {
        delivery_id: Some(d.id.clone()),
        ..Default::default()
    };
    let first = store
        .list_attempts(
            &acme,
            by_delivery.clone(),
            PageRequest {
                limit: 1,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first.data.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [2]
    );
    let rest = store
        .list_attempts(
            &acme,
            by_delivery,
            PageRequest {
                limit: 1,
                cursor: first.next_cursor.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.data.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1]);
    // A body sent as the message's payload is kept once, with the message, and read
    // back from there.
    let third = delivery(&store, &acme, Some(&ep.id), Some(&node)).await;
    assert!(matches!(
        store
            .claim(&third.id, &node, 10_000_000, None)
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));
    let mut sent = outcome(&third, 1, NextState::Succeeded, 2_010);
    sent.attempt.request_body = None;
    sent.attempt.request_body_is_payload = true;
    store.record_outcome(sent, &node).await.unwrap();
    let by_third = AttemptFilter {
        delivery_id: Some(third.id.clone()),
        ..Default::default()
    };
    let read = store
        .list_attempts(&acme, by_third, PageRequest::default())
        .await
        .unwrap();
    let payload = store
        .get_message(&acme, &third.message_id)
        .await
        .unwrap()
        .unwrap()
        .payload;
    assert_eq!(read.data[0].request_body.as_deref(), Some(payload.as_str()));
    assert!(read.data[0].request_body_is_payload);
    let window = AttemptFilter {
        since: Some(2_002),
        until: Some(2_003),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_attempts(&acme, window, PageRequest::default())
            .await
            .unwrap()
            .data
            .len(),
        1
    );
    let paged = store
        .list_attempts(
            &acme,
            AttemptFilter::default(),
            PageRequest {
                limit: 2,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(paged.data.len(), 2);
    assert!(paged.next_cursor.is_some());
}

pub async fn stats_count_what_happened(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let node = NodeId::new();
    let ok = delivery(&store, &acme, None, Some(&node)).await;
    let retried = delivery(&store, &acme, None, Some(&node)).await;
    let dead = delivery(&store, &acme, None, Some(&node)).await;
    try_once(&store, &ok, &node, 1, NextState::Succeeded).await;
    try_once(
        &store,
        &retried,
        &node,
        1,
        NextState::Retry {
            at: 9_999_999,
            error: "HTTP 503".into(),
        },
    )
    .await;
    try_once(
        &store,
        &dead,
        &node,
        1,
        NextState::Dead {
            reason: "HTTP 410".into(),
        },
    )
    .await;
    let stats = store.tenant_stats(&acme).await.unwrap();
    assert_eq!(
        (
            stats.total_events,
            stats.successful_events,
            stats.failed_events,
            stats.pending_retries,
            stats.dead_letter_count
        ),
        (3, 1, 2, 1, 1)
    );
    assert_eq!(stats.avg_response_time_ms, 5.0);
    assert!(stats.last_updated.is_some());
    let window = store.attempt_stats(Some(&acme), 0).await.unwrap();
    assert_eq!(
        (
            window.total,
            window.success,
            window.retry,
            window.failed,
            window.p99_ms
        ),
        (3, 1, 1, 1, 5)
    );
    let globex = tenant(&store, "globex").await;
    let theirs = delivery(&store, &globex, None, Some(&node)).await;
    try_once(&store, &theirs, &node, 1, NextState::Succeeded).await;
    let everyone = store.attempt_stats(None, 0).await.unwrap();
    assert_eq!((everyone.total, everyone.success), (4, 2), "every tenant's");
    let acme_only = store.attempt_stats(Some(&acme), 0).await.unwrap();
    assert_eq!(acme_only.total, 3);
    let open = store.open_stats(10_000_000).await.unwrap();
    assert_eq!(
        (open.pending, open.delivering, open.oldest_due),
        (1, 0, Some(9_999_999))
    );
    let failures = store.recent_failures(None, 10).await.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].delivery.id, dead.id);
}

pub async fn purge_removes_old_finished_work_only(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let node = NodeId::new();
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    // An old finished message, an old one still pending, and a recent finished one.
    let mut ids = Vec::new();
    for (age, finish) in [(40 * day, true), (40 * day, false), (0, true)] {
        let mut i = ingest(&acme, None, None);
        let at = now - age;
        i.message.id = herald_core::MessageId::from_stored(format!(
            "msg_{}",
            ulid::Ulid::from_parts(at as u64, rand_bits())
        ));
        i.message.created_at = at;
        for d in &mut i.deliveries {
            d.message_id = i.message.id.clone();
        }
        let IngestResult::Created(d) = store.ingest(i, Some(&node)).await.unwrap() else {
            panic!()
        };
        if finish {
            try_once(&store, &d[0], &node, 1, NextState::Succeeded).await;
        }
        ids.push(d[0].message_id.clone());
    }
    let purged = store
        .purge(now - 30 * day, now - 7 * day, 100)
        .await
        .unwrap();
    assert_eq!(purged.messages, 1);
    assert!(
        store.get_message(&acme, &ids[0]).await.unwrap().is_none(),
        "old and finished: gone"
    );
    assert!(
        store.get_message(&acme, &ids[1]).await.unwrap().is_some(),
        "old but pending: kept"
    );
    assert!(
        store.get_message(&acme, &ids[2]).await.unwrap().is_some(),
        "recent: kept"
    );
    assert_eq!(
        store
            .message_deliveries(&acme, &ids[0])
            .await
            .unwrap()
            .len(),
        0
    );
    let attempts = store
        .list_attempts(&acme, AttemptFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(attempts.data.len(), 1, "the recent message's attempt stays");
    let globex = tenant(&store, "globex").await;
    let theirs = delivery(&store, &globex, None, Some(&node)).await;
    try_once(&store, &theirs, &node, 1, NextState::Succeeded).await;
    // Attempts age out on their own clock, in every tenant.
    let purged = store.purge(now - 30 * day, now + day, 100).await.unwrap();
    assert_eq!(purged.attempts, 2);
}

fn rand_bits() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) as u128
}

pub async fn endpoint_health_and_throughput_come_from_the_tries(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let (busy, idle) = (
        endpoint(&store, &acme, false).await,
        endpoint(&store, &acme, false).await,
    );
    let node = NodeId::new();
    let ok = delivery(&store, &acme, Some(&busy.id), Some(&node)).await;
    let failed = delivery(&store, &acme, Some(&busy.id), Some(&node)).await;
    let waiting = delivery(&store, &acme, Some(&idle.id), Some(&node)).await;
    try_once(&store, &ok, &node, 1, NextState::Succeeded).await;
    let dead = NextState::Dead {
        reason: "HTTP 410".into(),
    };
    try_once(&store, &failed, &node, 1, dead).await;

    let mut stats = store.endpoint_stats(&acme, 0).await.unwrap();
    stats.sort_by_key(|s| s.open);
    assert_eq!(stats.len(), 2, "{stats:?}");
    let (b, i) = (&stats[0], &stats[1]);
    assert_eq!(b.endpoint_id, busy.id);
    assert_eq!(
        (b.attempts.total, b.attempts.success, b.attempts.failed),
        (2, 1, 1)
    );
    assert_eq!((b.open, b.dead), (0, 1));
    assert_eq!(i.endpoint_id, idle.id);
    assert_eq!((i.attempts.total, i.open, i.dead), (0, 1, 0));

    let points = store.throughput(&acme, 0).await.unwrap();
    assert_eq!(
        points,
        vec![ThroughputPoint {
            at: 2_000,
            success: 1,
            failure: 1
        }],
        "both tries fell in the second starting at 2 s"
    );

    let by_status = |status, event_type: Option<&str>| {
        let store = store.clone();
        let acme = acme.clone();
        let event_type = event_type.map(String::from);
        async move {
            let filter = MessageFilter {
                status: Some(status),
                event_type,
                ..Default::default()
            };
            let page = PageRequest {
                limit: 10,
                cursor: None,
            };
            let listed = store.list_messages(&acme, filter, page).await.unwrap();
            listed.data.into_iter().map(|m| m.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        by_status(DeliveryStatus::Dead, None).await,
        vec![failed.message_id.clone()]
    );
    assert_eq!(
        by_status(DeliveryStatus::Pending, None).await,
        vec![waiting.message_id.clone()]
    );
    assert_eq!(
        by_status(DeliveryStatus::Dead, Some("user.created")).await,
        vec![failed.message_id.clone()],
        "status and event type together"
    );
    assert!(by_status(DeliveryStatus::Dead, Some("other.type"))
        .await
        .is_empty());
}
