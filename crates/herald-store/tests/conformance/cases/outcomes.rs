//! Outcomes: moving deliveries on, stale outcomes, dead letters and their replay, disabling an endpoint.

use std::sync::Arc;

use herald_core::delivery::DeliveryStatus;
use herald_store::prelude::*;
use herald_store::*;

use crate::fixtures::*;

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
