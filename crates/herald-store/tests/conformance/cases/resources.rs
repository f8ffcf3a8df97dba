//! Tenants, endpoints and the message listing.

use std::sync::Arc;

use herald_core::delivery::DeliveryStatus;
use herald_store::prelude::*;
use herald_store::*;

use crate::fixtures::*;

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
    assert!(store
        .get_message(&a, &open.message_id)
        .await
        .unwrap()
        .is_none());
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
    let got = store.get_message(&acme, &ids[0]).await.unwrap().unwrap();
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
    assert_eq!(
        store
            .message_deliveries(&acme, &ids[0])
            .await
            .unwrap()
            .len(),
        1
    );
}
