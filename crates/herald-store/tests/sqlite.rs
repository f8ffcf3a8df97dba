//! The SQLite store on a real file: group commit under concurrent writers, one
//! failing write leaving its batch-mates alone, idempotency, outcomes that arrive
//! after their delivery was closed.

use std::sync::Arc;

use herald_core::delivery::DeliveryStatus;
use herald_core::{AttemptId, MessageId, TenantId};
use herald_store::sqlite::SqliteStore;
use herald_store::*;

async fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db")).await.unwrap();
    let tenant = Tenant {
        id: TenantId::parse("acme", "id").unwrap(),
        name: "Acme".into(),
        retry_policy: None,
        created_at: 1,
        updated_at: 1,
    };
    store.create_tenant(tenant).await.unwrap();
    (dir, Arc::new(store))
}

fn message(key: Option<&str>) -> StoredMessage {
    StoredMessage {
        id: MessageId::new(),
        tenant_id: TenantId::parse("acme", "id").unwrap(),
        event_type: "a".into(),
        payload: "{}".into(),
        headers: Default::default(),
        context: None,
        idempotency_key: key.map(String::from),
        created_at: 1000,
    }
}

fn ingest(key: Option<&str>, adhoc: bool) -> Ingest {
    let m = message(key);
    let target = adhoc.then(|| herald_core::delivery::AdHocTarget {
        url: "http://127.0.0.1/x".into(),
        method: "POST".into(),
        signature: herald_core::signing::SignatureConfig::new(
            herald_core::signing::SignatureScheme::HmacSha256Hex,
            None,
            None,
            Some("secret-key".into()),
        )
        .unwrap(),
        headers: Default::default(),
        retry_policy: None,
    });
    let d = Delivery::new(&m, None, target, 1000);
    Ingest {
        message: m,
        deliveries: vec![d],
    }
}

#[tokio::test]
async fn concurrent_ingests_are_all_committed_in_commit_order() {
    let (_dir, store) = store().await;
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.ingest(ingest(None, true)).await.unwrap() })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            IngestResult::Created(d) => seqs.push(d[0].seq),
            IngestResult::Duplicate(_) => panic!("no keys were given"),
        }
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 200, "each delivery got its own seq");
    let up_to = store.recover_in_flight().await.unwrap();
    assert_eq!(up_to, *seqs.last().unwrap());
    let open = store.open_deliveries(0, up_to, 1000).await.unwrap();
    assert_eq!(open.len(), 200);
    assert!(open.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[tokio::test]
async fn a_failing_write_does_not_sink_its_batch() {
    let (_dir, store) = store().await;
    let first = ingest(Some("k"), true);
    let mut clash = ingest(None, true);
    clash.message.id = first.message.id.clone(); // primary key clash: fails alone
    let tasks: Vec<_> = [first, clash, ingest(None, true)]
        .into_iter()
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.ingest(i).await })
        })
        .collect();
    let results: Vec<_> = futures_results(tasks).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "{results:?}"
    );
    assert_eq!(
        store.open_deliveries(0, i64::MAX, 100).await.unwrap().len(),
        2
    );
}

async fn futures_results(
    tasks: Vec<tokio::task::JoinHandle<StoreResult<IngestResult>>>,
) -> Vec<StoreResult<IngestResult>> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_message() {
    let (_dir, store) = store().await;
    let first = ingest(Some("same"), true);
    let first_id = first.message.id.clone();
    store.ingest(first).await.unwrap();
    match store.ingest(ingest(Some("same"), true)).await.unwrap() {
        IngestResult::Duplicate(id) => assert_eq!(id, first_id),
        IngestResult::Created(_) => panic!("a repeated key must not create a copy"),
    }
}

#[tokio::test]
async fn an_outcome_after_cancel_keeps_the_attempt_but_not_the_state() {
    let (_dir, store) = store().await;
    let IngestResult::Created(deliveries) = store.ingest(ingest(None, true)).await.unwrap() else {
        panic!()
    };
    let d = &deliveries[0];
    assert_eq!(
        store
            .cancel_deliveries(std::slice::from_ref(&d.id), 2000)
            .await
            .unwrap(),
        vec![d.id.clone()]
    );
    let attempt = Attempt {
        id: AttemptId::new(),
        delivery_id: d.id.clone(),
        message_id: d.message_id.clone(),
        tenant_id: d.tenant_id.clone(),
        endpoint_id: None,
        attempt: 1,
        method: "POST".into(),
        url: "http://127.0.0.1/x".into(),
        request_headers: vec![],
        response_status: Some(200),
        response_headers: vec![],
        response_body: None,
        duration_ms: 3,
        outcome: "success".into(),
        error_kind: None,
        error: None,
        created_at: 2001,
    };
    let applied = store
        .record_outcome(Outcome {
            attempt,
            next: NextState::Succeeded,
            now: 2001,
        })
        .await
        .unwrap();
    assert_eq!(applied, OutcomeApplied::Stale);
    let now = store.get_delivery(&d.id).await.unwrap().unwrap();
    assert_eq!(now.status, DeliveryStatus::Cancelled);
    let attempts = store
        .list_attempts(
            &d.tenant_id,
            AttemptFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(attempts.data.len(), 1);
}

#[tokio::test]
async fn reopening_the_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        let tenant = Tenant {
            id: TenantId::parse("acme", "id").unwrap(),
            name: "Acme".into(),
            retry_policy: None,
            created_at: 1,
            updated_at: 1,
        };
        store.create_tenant(tenant).await.unwrap();
        store.ingest(ingest(None, true)).await.unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(
        store.open_deliveries(0, i64::MAX, 10).await.unwrap().len(),
        1
    );
    assert!(store.ping().await.is_ok());
}
