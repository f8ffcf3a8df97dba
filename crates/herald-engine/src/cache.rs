//! In-memory copies of what every ingest and every attempt reads: a tenant's
//! endpoints (for fan-out), tenants' default retry policies, and the API tokens
//! requests present (only tokens found: an unknown one is looked up each time).
//! The engine refreshes an entry whenever it changes one, and forgets what other
//! processes sharing the store changed as the store announces it; a miss reads the
//! store. A read that a forgetting overtook is not kept: it may predate the change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use herald_core::endpoint::Endpoint;
use herald_core::retry::RetryPolicy;
use herald_core::{EndpointId, TenantId};
use herald_store::prelude::*;
use herald_store::{ApiToken, StoreResult};

#[derive(Clone)]
pub(crate) struct TenantEntry {
    pub retry_policy: Option<RetryPolicy>,
    pub endpoints: Arc<Vec<Arc<Endpoint>>>,
}

pub(crate) struct Cache {
    store: Arc<dyn Store>,
    tenants: RwLock<HashMap<TenantId, Option<TenantEntry>>>,
    endpoints: RwLock<HashMap<EndpointId, Arc<Endpoint>>>,
    /// Tokens found, by hash.
    tokens: RwLock<HashMap<String, ApiToken>>,
    /// Counts forgettings; bumped while holding the lock of the map forgotten from.
    generation: AtomicU64,
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
            tokens: RwLock::default(),
            generation: AtomicU64::new(0),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Puts a read into `map` unless something was forgotten since it began (`seen`).
    fn keep<K, V>(
        &self,
        map: &RwLock<HashMap<K, V>>,
        seen: u64,
        put: impl FnOnce(&mut HashMap<K, V>),
    ) {
        let mut map = write(map);
        if self.generation() == seen {
            put(&mut map);
        }
    }

    /// The tenant's settings and endpoints; `None` when the tenant does not exist.
    pub async fn tenant(&self, id: &TenantId) -> StoreResult<Option<TenantEntry>> {
        if let Some(entry) = read(&self.tenants).get(id) {
            return Ok(entry.clone());
        }
        let seen = self.generation();
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
                self.keep(&self.endpoints, seen, |by_id| {
                    for e in &endpoints {
                        by_id.insert(e.id.clone(), e.clone());
                    }
                });
                Some(TenantEntry {
                    retry_policy: tenant.retry_policy,
                    endpoints: Arc::new(endpoints),
                })
            }
        };
        // Cache only what exists: a tenant created by another path is then found.
        if entry.is_some() {
            self.keep(&self.tenants, seen, |tenants| {
                tenants.insert(id.clone(), entry.clone());
            });
        }
        Ok(entry)
    }

    pub async fn endpoint(&self, id: &EndpointId) -> StoreResult<Option<Arc<Endpoint>>> {
        if let Some(e) = read(&self.endpoints).get(id) {
            return Ok(Some(e.clone()));
        }
        let seen = self.generation();
        let found = self.store.get_endpoint(id).await?.map(Arc::new);
        if let Some(e) = &found {
            self.keep(&self.endpoints, seen, |endpoints| {
                endpoints.insert(id.clone(), e.clone());
            });
        }
        Ok(found)
    }

    /// Reads an endpoint changed elsewhere (by the store on its own, or by another
    /// process) back into the cache: `None` when it is gone. On an error it stays
    /// forgotten, and the next miss reads it.
    pub async fn reload_endpoint(
        &self,
        id: &EndpointId,
        tenant: &TenantId,
    ) -> StoreResult<Option<Arc<Endpoint>>> {
        {
            let mut endpoints = write(&self.endpoints);
            self.bump();
            endpoints.remove(id);
        }
        self.forget_tenant(tenant);
        self.endpoint(id).await
    }

    /// Forgets what is known of a tenant (its settings or its endpoint list changed,
    /// or it is gone, and its tokens with it).
    pub fn forget_tenant(&self, id: &TenantId) {
        let mut tenants = write(&self.tenants);
        let mut tokens = write(&self.tokens);
        self.bump();
        tenants.remove(id);
        tokens.retain(|_, t| &t.tenant_id != id);
    }

    /// The token with this hash; `None` when no such token exists (or it was revoked).
    pub async fn token(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        if let Some(token) = read(&self.tokens).get(hash) {
            return Ok(Some(token.clone()));
        }
        let seen = self.generation();
        let found = self.store.find_token(hash).await?;
        if let Some(token) = &found {
            self.keep(&self.tokens, seen, |tokens| {
                tokens.insert(hash.to_string(), token.clone());
            });
        }
        Ok(found)
    }

    /// Forgets a token (revoked).
    pub fn forget_token(&self, id: &str) {
        let mut tokens = write(&self.tokens);
        self.bump();
        tokens.retain(|_, t| t.id != id);
    }

    /// Forgets everything; answers the endpoints that were known, with their tenants.
    pub fn forget_all(&self) -> Vec<(EndpointId, TenantId)> {
        let mut tenants = write(&self.tenants);
        let mut endpoints = write(&self.endpoints);
        let mut tokens = write(&self.tokens);
        self.bump();
        tenants.clear();
        tokens.clear();
        endpoints
            .drain()
            .map(|(id, e)| (id, e.tenant_id.clone()))
            .collect()
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
