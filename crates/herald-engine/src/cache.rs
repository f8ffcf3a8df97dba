//! In-memory copies of what every ingest and every attempt reads: a tenant's
//! endpoints (for fan-out) and tenants' default retry policies. The engine is the
//! only writer of endpoints and tenants in this process, so it refreshes an entry
//! whenever it changes one; a miss reads the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use herald_core::endpoint::Endpoint;
use herald_core::retry::RetryPolicy;
use herald_core::{EndpointId, TenantId};
use herald_store::prelude::*;
use herald_store::StoreResult;

#[derive(Clone)]
pub(crate) struct TenantEntry {
    pub retry_policy: Option<RetryPolicy>,
    pub endpoints: Arc<Vec<Arc<Endpoint>>>,
}

pub(crate) struct Cache {
    store: Arc<dyn Store>,
    tenants: RwLock<HashMap<TenantId, Option<TenantEntry>>>,
    endpoints: RwLock<HashMap<EndpointId, Arc<Endpoint>>>,
}

fn read<K, V>(lock: &RwLock<HashMap<K, V>>) -> std::sync::RwLockReadGuard<'_, HashMap<K, V>> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<K, V>(lock: &RwLock<HashMap<K, V>>) -> std::sync::RwLockWriteGuard<'_, HashMap<K, V>> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            tenants: RwLock::default(),
            endpoints: RwLock::default(),
        }
    }

    /// The tenant's settings and endpoints; `None` when the tenant does not exist.
    pub async fn tenant(&self, id: &TenantId) -> StoreResult<Option<TenantEntry>> {
        if let Some(entry) = read(&self.tenants).get(id) {
            return Ok(entry.clone());
        }
        let entry = match self.store.get_tenant(id).await? {
            None => None,
            Some(tenant) => {
                let endpoints: Vec<Arc<Endpoint>> = self
                    .store
                    .tenant_endpoints(id)
                    .await?
                    .into_iter()
                    .map(Arc::new)
                    .collect();
                let mut by_id = write(&self.endpoints);
                for e in &endpoints {
                    by_id.insert(e.id.clone(), e.clone());
                }
                Some(TenantEntry {
                    retry_policy: tenant.retry_policy,
                    endpoints: Arc::new(endpoints),
                })
            }
        };
        // Cache only what exists: a tenant created by another path is then found.
        if entry.is_some() {
            write(&self.tenants).insert(id.clone(), entry.clone());
        }
        Ok(entry)
    }

    pub async fn endpoint(&self, id: &EndpointId) -> StoreResult<Option<Arc<Endpoint>>> {
        if let Some(e) = read(&self.endpoints).get(id) {
            return Ok(Some(e.clone()));
        }
        let found = self.store.get_endpoint(id).await?.map(Arc::new);
        if let Some(e) = &found {
            write(&self.endpoints).insert(id.clone(), e.clone());
        }
        Ok(found)
    }

    /// Reads an endpoint the store changed on its own (`disable_endpoint`) back into
    /// the cache; `None` when it cannot be read (the next miss reads it).
    pub async fn reload_endpoint(
        &self,
        id: &EndpointId,
        tenant: &TenantId,
    ) -> Option<Arc<Endpoint>> {
        write(&self.endpoints).remove(id);
        self.forget_tenant(tenant);
        match self.store.get_endpoint(id).await {
            Ok(Some(e)) => {
                let e = Arc::new(e);
                write(&self.endpoints).insert(id.clone(), e.clone());
                Some(e)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(endpoint_id = %id, error = %e, "cannot reload a disabled endpoint");
                None
            }
        }
    }

    /// Forgets what is known of a tenant (its settings or its endpoint list changed).
    pub fn forget_tenant(&self, id: &TenantId) {
        write(&self.tenants).remove(id);
    }

    /// Records an endpoint's new state (`None`: deleted).
    pub fn set_endpoint(
        &self,
        id: &EndpointId,
        tenant: &TenantId,
        endpoint: Option<Arc<Endpoint>>,
    ) {
        match endpoint {
            Some(e) => write(&self.endpoints).insert(id.clone(), e),
            None => write(&self.endpoints).remove(id),
        };
        self.forget_tenant(tenant);
    }
}
