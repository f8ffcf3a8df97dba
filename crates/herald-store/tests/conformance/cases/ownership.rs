//! Which node owns a delivery: claims, ordered claims, adoption of orphans.

use std::sync::Arc;

use herald_core::delivery::DeliveryStatus;
use herald_store::prelude::*;
use herald_store::*;

use crate::fixtures::*;

pub async fn claims_belong_to_one_node(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let (a, b) = (NodeId::new(), NodeId::new());
    let d = delivery(&store, &acme, None, Some(&a)).await;
    assert_eq!(
        store.claim(&d.id, &b, 9_000, None).await.unwrap(),
        Claim::Lost,
        "another node's delivery"
    );
    let Claim::Claimed(tries) = store.claim(&d.id, &a, 9_000, None).await.unwrap() else {
        panic!("the owner claims")
    };
    assert_eq!((tries.attempts, tries.attempt_base), (0, 0));
    assert_eq!(
        store.get_delivery(&d.id).await.unwrap().unwrap().status,
        DeliveryStatus::Delivering
    );
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

pub async fn owned_deliveries_page_in_send_order(store: Arc<dyn Store>) {
    let acme = tenant(&store, "acme").await;
    let ep = endpoint(&store, &acme, false).await;
    let (a, b) = (NodeId::new(), NodeId::new());
    let first = delivery(&store, &acme, Some(&ep.id), Some(&a)).await;
    let second = delivery(&store, &acme, Some(&ep.id), Some(&a)).await;
    let third = delivery(&store, &acme, Some(&ep.id), Some(&a)).await;
    let done = delivery(&store, &acme, Some(&ep.id), Some(&a)).await;
    delivery(&store, &acme, Some(&ep.id), Some(&b)).await;
    let callback = delivery(&store, &acme, None, Some(&a)).await;
    let retry = NextState::Retry {
        at: 50_000,
        error: "HTTP 500".into(),
    };
    try_once(&store, &first, &a, 1, retry).await;
    try_once(&store, &done, &a, 1, NextState::Succeeded).await;
    let ids = |ds: Vec<(Delivery, StoredMessage)>| {
        for (d, m) in &ds {
            assert_eq!(d.message_id, m.id, "each delivery comes with its message");
        }
        ds.into_iter().map(|(d, _)| d.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store
            .owned_deliveries(&a, LaneRef::Endpoint(&ep.id), false, 10)
            .await
            .unwrap()),
        vec![second.id.clone(), third.id.clone(), first.id.clone()],
        "by due time, this node's open deliveries of this endpoint only"
    );
    assert_eq!(
        ids(store
            .owned_deliveries(&a, LaneRef::Endpoint(&ep.id), true, 10)
            .await
            .unwrap()),
        vec![first.id.clone(), second.id.clone(), third.id.clone()],
        "by commit order"
    );
    assert_eq!(
        ids(store
            .owned_deliveries(&a, LaneRef::Endpoint(&ep.id), false, 1)
            .await
            .unwrap()),
        vec![second.id.clone()],
        "limited"
    );
    let origin = herald_core::network::origin(&callback.target.as_ref().unwrap().url);
    assert_eq!(
        ids(store
            .owned_deliveries(&a, LaneRef::Origin(&origin), false, 10)
            .await
            .unwrap()),
        vec![callback.id.clone()],
        "the ad-hoc callbacks to one origin"
    );
    assert!(store
        .owned_deliveries(&b, LaneRef::Origin(&origin), false, 10)
        .await
        .unwrap()
        .is_empty());
}
