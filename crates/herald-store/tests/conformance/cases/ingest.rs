//! Ingest: commit order, batches that survive a bad write, idempotency keys.

use std::collections::HashSet;
use std::sync::Arc;

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
