//! The store's behaviour, backend-independent.

use std::collections::HashSet;
use std::sync::Arc;

use herald_core::delivery::DeliveryStatus;
use herald_store::prelude::*;
use herald_store::*;

use crate::fixtures::*;

pub async fn concurrent_ingests_get_commit_order(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (store, acme) = (store.clone(), acme.clone());
            tokio::spawn(
                async move { store.ingest(ingest(&acme, None, None), None).await.unwrap() },
            )
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        let IngestResult::Created(d) = task.await.unwrap() else {
            panic!("no keys were given")
        };
        seqs.push(d[0].seq);
    }
    let distinct: HashSet<_> = seqs.iter().collect();
    assert_eq!(distinct.len(), 200, "each delivery has its own seq");
    let node = NodeId::new();
    store.heartbeat(&node, 5_000).await.unwrap();
    let adopted = store.adopt_orphans(&node, 5_000, 0, 1_000).await.unwrap();
    assert_eq!(adopted.len(), 200, "unowned deliveries are orphans");
    assert!(
        adopted.windows(2).all(|w| w[0].seq < w[1].seq),
        "adopted in commit order"
    );
    assert!(
        store
            .adopt_orphans(&NodeId::new(), 5_000, 0, 1_000)
            .await
            .unwrap()
            .is_empty(),
        "a live node's work is not adopted"
    );
}

pub async fn a_failing_write_does_not_sink_its_batch(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let first = ingest(&acme, None, None);
    let mut clash = ingest(&acme, None, None);
    clash.message.id = first.message.id.clone();
    store.ingest(first, None).await.unwrap();
    let tasks: Vec<_> = [clash, ingest(&acme, None, None), ingest(&acme, None, None)]
        .into_iter()
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.ingest(i, None).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        ok += task.await.unwrap().is_ok() as usize;
    }
    assert_eq!(ok, 2, "only the clashing write fails");
    let node = NodeId::new();
    assert_eq!(
        store
            .adopt_orphans(&node, 5_000, 0, 100)
            .await
            .unwrap()
            .len(),
        3
    );
}

pub async fn idempotency_keys_return_the_first_message(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let other = tenant(&store, "other").await;
    let first = ingest(&acme, None, Some("order-1"));
    let first_id = first.message.id.clone();
    store.ingest(first, None).await.unwrap();
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (store, acme) = (store.clone(), acme.clone());
            tokio::spawn(async move {
                store
                    .ingest(ingest(&acme, None, Some("order-1")), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        match task.await.unwrap() {
            IngestResult::Duplicate(id) => assert_eq!(id, first_id),
            IngestResult::Created(_) => panic!("a repeated key must not create a copy"),
        }
    }
    assert!(
        matches!(
            store
                .ingest(ingest(&other, None, Some("order-1")), None)
                .await
                .unwrap(),
            IngestResult::Created(_)
        ),
        "keys are per tenant"
    );
}

pub async fn tenants_are_created_listed_and_deleted(store: Arc<dyn Store>) {
    let a = tenant(&store, "a").await;
    tenant(&store, "b").await;
    tenant(&store, "c").await;
    let dup = Tenant {
        id: a.clone(),
        name: "again".into(),
        retry_policy: None,
        created_at: 1,
        updated_at: 1,
    };
    assert!(matches!(
        store.create_tenant(dup).await,
        Err(StoreError::Conflict(_))
    ));
    let mut t = store.get_tenant(&a).await.unwrap().unwrap();
    t.name = "Renamed".into();
    t.retry_policy = Some(herald_core::retry::RetryPolicy::Schedule {
        delays_seconds: vec![1.0, 2.0],
    });
    store.update_tenant(t.clone()).await.unwrap();
    assert_eq!(store.get_tenant(&a).await.unwrap().unwrap(), t);
    let first = store
        .list_tenants(PageRequest {
            limit: 2,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(
        first.data.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec!["c", "b"]
    );
    let rest = store
        .list_tenants(PageRequest {
            limit: 2,
            cursor: first.next_cursor,
        })
        .await
        .unwrap();
    assert_eq!(rest.data.len(), 1);
    assert!(rest.next_cursor.is_none());

    let ep = endpoint(&store, &a, false).await;
    let open = delivery(&store, &a, Some(&ep.id), None).await;
    assert_eq!(
        store.delete_tenant(&a).await.unwrap(),
        vec![open.id.clone()]
    );
    assert!(store.get_tenant(&a).await.unwrap().is_none());
    assert!(store.get_endpoint(&ep.id).await.unwrap().is_none());
    assert!(store.get_message(&open.message_id).await.unwrap().is_none());
    assert!(matches!(
        store.delete_tenant(&a).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn endpoints_are_managed_and_deletion_cancels(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let mut ep = endpoint(&store, &acme, false).await;
    let second = endpoint(&store, &acme, true).await;
    assert_eq!(store.get_endpoint(&ep.id).await.unwrap().unwrap(), ep);
    ep.description = "changed".into();
    store.update_endpoint(ep.clone()).await.unwrap();
    assert_eq!(
        store
            .get_endpoint(&ep.id)
            .await
            .unwrap()
            .unwrap()
            .description,
        "changed"
    );
    assert_eq!(store.tenant_endpoints(&acme).await.unwrap().len(), 2);
    let page = store
        .list_endpoints(
            &acme,
            PageRequest {
                limit: 1,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.data[0].id, second.id, "newest first");
    assert!(page.next_cursor.is_some());
    let orphan_tenant = endpoint_for_missing_tenant();
    assert!(matches!(
        store.create_endpoint(orphan_tenant).await,
        Err(StoreError::NotFound)
    ));

    let open = delivery(&store, &acme, Some(&ep.id), None).await;
    assert_eq!(
        store.delete_endpoint(&ep.id).await.unwrap(),
        vec![open.id.clone()]
    );
    assert_eq!(
        store.get_delivery(&open.id).await.unwrap().unwrap().status,
        DeliveryStatus::Cancelled
    );
    assert!(store.get_endpoint(&ep.id).await.unwrap().is_none());
    assert_eq!(store.tenant_endpoints(&acme).await.unwrap().len(), 1);
    assert!(matches!(
        store.delete_endpoint(&ep.id).await,
        Err(StoreError::NotFound)
    ));
}

fn endpoint_for_missing_tenant() -> herald_core::endpoint::Endpoint {
    let spec: herald_core::endpoint::EndpointSpec =
        serde_json::from_value(serde_json::json!({"url": "http://x.io/"})).unwrap();
    herald_core::endpoint::Endpoint::create(
        tenant_id("missing"),
        spec,
        &Default::default(),
        chrono::Utc::now(),
    )
    .unwrap()
}

pub async fn messages_are_listed_with_filters_and_cursors(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let mut i = ingest(&acme, None, None);
        i.message.created_at = 1_000 + n;
        if n % 2 == 1 {
            i.message.event_type = "odd".into();
        }
        ids.push(i.message.id.clone());
        store.ingest(i, None).await.unwrap();
    }
    let got = store.get_message(&ids[0]).await.unwrap().unwrap();
    assert_eq!(got.payload, r#"{"a":1}"#);
    assert_eq!(got.headers.get("X-Trace").map(String::as_str), Some("t1"));
    assert_eq!(got.context, Some(serde_json::json!({"source": "test"})));
    let page = store
        .list_messages(
            &acme,
            MessageFilter::default(),
            PageRequest {
                limit: 2,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.data.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        vec![ids[4].clone(), ids[3].clone()]
    );
    let next = store
        .list_messages(
            &acme,
            MessageFilter::default(),
            PageRequest {
                limit: 2,
                cursor: page.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(next.data[0].id, ids[2]);
    let odd = MessageFilter {
        event_type: Some("odd".into()),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_messages(&acme, odd, PageRequest::default())
            .await
            .unwrap()
            .data
            .len(),
        2
    );
    let window = MessageFilter {
        since: Some(1_001),
        until: Some(1_003),
        ..Default::default()
    };
    assert_eq!(
        store
            .list_messages(&acme, window, PageRequest::default())
            .await
            .unwrap()
            .data
            .len(),
        2
    );
    assert_eq!(store.message_deliveries(&ids[0]).await.unwrap().len(), 1);
}

pub async fn claims_belong_to_one_node(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let (a, b) = (NodeId::new(), NodeId::new());
    let d = delivery(&store, &acme, None, Some(&a)).await;
    assert_eq!(
        store.claim(&d.id, &b, 9_000, None).await.unwrap(),
        Claim::Lost,
        "another node's delivery"
    );
    let Claim::Claimed(claimed) = store.claim(&d.id, &a, 9_000, None).await.unwrap() else {
        panic!("the owner claims")
    };
    assert_eq!(claimed.status, DeliveryStatus::Delivering);
    store
        .cancel_deliveries(std::slice::from_ref(&d.id), 3_000)
        .await
        .unwrap();
    assert_eq!(
        store.claim(&d.id, &a, 9_000, None).await.unwrap(),
        Claim::Lost,
        "a cancelled delivery"
    );
}

pub async fn ordered_claims_wait_for_earlier_deliveries(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let ep = endpoint(&store, &acme, true).await;
    let (a, b) = (NodeId::new(), NodeId::new());
    let first = delivery(&store, &acme, Some(&ep.id), Some(&a)).await;
    let second = delivery(&store, &acme, Some(&ep.id), Some(&b)).await;
    assert!(first.seq < second.seq);
    assert_eq!(
        store
            .claim(&second.id, &b, 9_000, Some(&ep.id))
            .await
            .unwrap(),
        Claim::Blocked
    );
    assert!(matches!(
        store
            .claim(&first.id, &a, 9_000, Some(&ep.id))
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));
    let retry = NextState::Retry {
        at: 5_000,
        error: "HTTP 500".into(),
    };
    store
        .record_outcome(outcome(&first, 1, retry, 2_000), &a)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(&second.id, &b, 9_000, Some(&ep.id))
            .await
            .unwrap(),
        Claim::Blocked,
        "the head retries"
    );
    assert!(matches!(
        store
            .claim(&first.id, &a, 9_000, Some(&ep.id))
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));
    store
        .record_outcome(outcome(&first, 2, NextState::Succeeded, 6_000), &a)
        .await
        .unwrap();
    assert!(matches!(
        store
            .claim(&second.id, &b, 9_000, Some(&ep.id))
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));
}

pub async fn orphans_of_dead_nodes_are_adopted(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let (dead, alive, heir) = (NodeId::new(), NodeId::new(), NodeId::new());
    store.heartbeat(&dead, 1_000).await.unwrap();
    store.heartbeat(&alive, 50_000).await.unwrap();
    let left = delivery(&store, &acme, None, Some(&dead)).await;
    let in_flight = delivery(&store, &acme, None, Some(&dead)).await;
    assert!(matches!(
        store
            .claim(&in_flight.id, &dead, 70_000, None)
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));
    let kept = delivery(&store, &acme, None, Some(&alive)).await;
    // At 60 s, with a 30 s node timeout: `dead` is dead, `alive` lives.
    let adopted = store
        .adopt_orphans(&heir, 60_000, 30_000, 100)
        .await
        .unwrap();
    assert_eq!(
        adopted.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![left.id.clone()],
        "a running lease is respected"
    );
    assert_eq!(adopted[0].status, DeliveryStatus::Pending);
    assert_eq!(
        store.claim(&left.id, &dead, 90_000, None).await.unwrap(),
        Claim::Lost,
        "the old owner lost it"
    );
    assert!(matches!(
        store.claim(&left.id, &heir, 90_000, None).await.unwrap(),
        Claim::Claimed(_)
    ));
    let later = store
        .adopt_orphans(&heir, 80_000, 30_000, 100)
        .await
        .unwrap();
    assert_eq!(
        later.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![in_flight.id.clone()],
        "after its lease ends"
    );
    assert_eq!(
        store.get_delivery(&kept.id).await.unwrap().unwrap().status,
        DeliveryStatus::Pending
    );
}

pub async fn outcomes_move_deliveries_on(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let node = NodeId::new();
    let d = delivery(&store, &acme, None, Some(&node)).await;
    let retry = NextState::Retry {
        at: 7_000,
        error: "HTTP 503".into(),
    };
    assert_eq!(
        try_once(&store, &d, &node, 1, retry).await,
        OutcomeApplied::Applied { also_dead: vec![] }
    );
    let now = store.get_delivery(&d.id).await.unwrap().unwrap();
    assert_eq!(
        (now.status, now.attempts, now.next_attempt_at),
        (DeliveryStatus::Pending, 1, Some(7_000))
    );
    assert_eq!(now.last_error.as_deref(), Some("HTTP 503"));
    try_once(&store, &d, &node, 2, NextState::Succeeded).await;
    let now = store.get_delivery(&d.id).await.unwrap().unwrap();
    assert_eq!(
        (now.status, now.attempts, now.next_attempt_at),
        (DeliveryStatus::Succeeded, 2, None)
    );
}

pub async fn outcomes_after_a_lost_claim_are_stale(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let (old, new) = (NodeId::new(), NodeId::new());
    store.heartbeat(&old, 1_000).await.unwrap();
    let d = delivery(&store, &acme, None, Some(&old)).await;
    assert!(matches!(
        store.claim(&d.id, &old, 2_000, None).await.unwrap(),
        Claim::Claimed(_)
    ));
    // The old node stalls past its heartbeat and its lease; the new one adopts.
    let adopted = store.adopt_orphans(&new, 60_000, 30_000, 10).await.unwrap();
    assert_eq!(adopted.len(), 1);
    assert!(matches!(
        store.claim(&d.id, &new, 90_000, None).await.unwrap(),
        Claim::Claimed(_)
    ));
    let late = store
        .record_outcome(
            outcome(
                &d,
                1,
                NextState::Dead {
                    reason: "late".into(),
                },
                61_000,
            ),
            &old,
        )
        .await
        .unwrap();
    assert_eq!(
        late,
        OutcomeApplied::Stale,
        "a lost claim's outcome overwrites nothing"
    );
    assert_eq!(
        store.get_delivery(&d.id).await.unwrap().unwrap().status,
        DeliveryStatus::Delivering
    );
    store
        .record_outcome(outcome(&d, 1, NextState::Succeeded, 62_000), &new)
        .await
        .unwrap();
    assert_eq!(
        store.get_delivery(&d.id).await.unwrap().unwrap().status,
        DeliveryStatus::Succeeded
    );
    let attempts = store
        .list_attempts(&acme, AttemptFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(attempts.data.len(), 2, "both tries are in the log");
}

pub async fn dead_letters_replay_with_a_fresh_budget(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let node = NodeId::new();
    let ep = endpoint(&store, &acme, false).await;
    let gone = endpoint(&store, &acme, false).await;
    let a = delivery(&store, &acme, Some(&ep.id), Some(&node)).await;
    let b = delivery(&store, &acme, Some(&ep.id), Some(&node)).await;
    let c = delivery(&store, &acme, Some(&gone.id), Some(&node)).await;
    for d in [&a, &b, &c] {
        try_once(
            &store,
            d,
            &node,
            1,
            NextState::Dead {
                reason: "permanent failure: HTTP 410".into(),
            },
        )
        .await;
    }
    store.delete_endpoint(&gone.id).await.unwrap();
    let dead = store
        .list_dead_letters(&acme, DeadLetterFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(dead.data.len(), 3);
    let of_gone = dead.data.iter().find(|d| d.delivery.id == c.id).unwrap();
    assert!(!of_gone.replayable);
    let of_ep = dead.data.iter().find(|d| d.delivery.id == a.id).unwrap();
    assert!(of_ep.replayable);
    assert_eq!(of_ep.url, "http://127.0.0.1:9/hook");
    assert_eq!(of_ep.event_type, "user.created");
    assert_eq!(
        of_ep.delivery.dead_reason.as_deref(),
        Some("permanent failure: HTTP 410")
    );

    let replayed = store
        .replay(&acme, ReplaySelector::One(a.id.clone()), Some(&node), 9_000)
        .await
        .unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        (
            replayed[0].status,
            replayed[0].attempts,
            replayed[0].attempt_base
        ),
        (DeliveryStatus::Pending, 1, 1)
    );
    assert!(matches!(
        store
            .replay(&acme, ReplaySelector::One(a.id.clone()), None, 9_000)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .replay(&acme, ReplaySelector::One(c.id.clone()), None, 9_000)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let other = tenant(&store, "other").await;
    assert!(matches!(
        store
            .replay(&other, ReplaySelector::One(b.id.clone()), None, 9_000)
            .await,
        Err(StoreError::NotFound)
    ));
    let bulk = DeadLetterFilter {
        endpoint_id: Some(ep.id.clone()),
        ..Default::default()
    };
    let replayed = store
        .replay(&acme, ReplaySelector::Bulk(bulk), Some(&node), 9_000)
        .await
        .unwrap();
    assert_eq!(
        replayed.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![b.id.clone()]
    );
    assert!(
        matches!(
            store.claim(&b.id, &node, 99_000, None).await.unwrap(),
            Claim::Claimed(_)
        ),
        "replayed to its owner"
    );
}

pub async fn disable_endpoint_dead_letters_its_queue(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let node = NodeId::new();
    let ep = endpoint(&store, &acme, false).await;
    let head = delivery(&store, &acme, Some(&ep.id), Some(&node)).await;
    let queued = delivery(&store, &acme, Some(&ep.id), Some(&node)).await;
    let next = NextState::DisableEndpoint {
        endpoint_id: ep.id.clone(),
        reason: "retries exhausted".into(),
    };
    let applied = try_once(&store, &head, &node, 3, next).await;
    assert_eq!(
        applied,
        OutcomeApplied::Applied {
            also_dead: vec![queued.id.clone()]
        }
    );
    let endpoint = store.get_endpoint(&ep.id).await.unwrap().unwrap();
    assert!(!endpoint.active);
    assert_eq!(
        endpoint.disabled_reason.as_deref(),
        Some("retries exhausted")
    );
    let q = store.get_delivery(&queued.id).await.unwrap().unwrap();
    assert_eq!((q.status, q.attempts), (DeliveryStatus::Dead, 0));
}

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
        store.get_message(&ids[0]).await.unwrap().is_none(),
        "old and finished: gone"
    );
    assert!(
        store.get_message(&ids[1]).await.unwrap().is_some(),
        "old but pending: kept"
    );
    assert!(
        store.get_message(&ids[2]).await.unwrap().is_some(),
        "recent: kept"
    );
    assert_eq!(store.message_deliveries(&ids[0]).await.unwrap().len(), 0);
    let attempts = store
        .list_attempts(&acme, AttemptFilter::default(), PageRequest::default())
        .await
        .unwrap();
    assert_eq!(attempts.data.len(), 1, "the recent message's attempt stays");
    // Attempts age out on their own clock.
    let purged = store.purge(now - 30 * day, now + day, 100).await.unwrap();
    assert_eq!(purged.attempts, 1);
}

fn rand_bits() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) as u128
}
