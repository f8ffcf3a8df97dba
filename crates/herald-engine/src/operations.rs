//! Operations that change what is scheduled: resend, cancel, replay, and changes
//! to endpoints, tenants and tokens (which the caches and the scheduler must hear
//! of, whichever process sharing the store made them).

use std::sync::Arc;

use herald_core::endpoint::Endpoint;
use herald_core::{DeliveryId, EndpointId, MessageId, TenantId, ValidationError};
use herald_store::{ApiToken, ConfigChange, Delivery, ReplaySelector, StoreError, Tenant};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::scheduler::{now_ms, Command};
use crate::{Engine, EngineError, EngineResult};

impl Engine {
    /// Sends a message again: to one endpoint, or to every target it had.
    pub async fn resend(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        endpoint: Option<&EndpointId>,
    ) -> EngineResult<Vec<Delivery>> {
        let (message, previous) = self.message(tenant, id).await?;
        let now = now_ms();
        let mut fresh = Vec::new();
        if let Some(endpoint_id) = endpoint {
            let known = self
                .inner
                .cache
                .endpoint(endpoint_id)
                .await?
                .filter(|e| &e.tenant_id == tenant);
            if known.is_none() {
                return Err(
                    ValidationError::new("endpoint_id", "no such endpoint in this tenant").into(),
                );
            }
            fresh.push(Delivery::new(
                &message,
                Some(endpoint_id.clone()),
                None,
                now,
            ));
        } else {
            let mut seen = Vec::new();
            for d in &previous {
                match (&d.endpoint_id, &d.target) {
                    (Some(e), _) if !seen.contains(e) => {
                        seen.push(e.clone());
                        if self.inner.cache.endpoint(e).await?.is_some() {
                            fresh.push(Delivery::new(&message, Some(e.clone()), None, now));
                        }
                    }
                    (None, Some(t)) => {
                        fresh.push(Delivery::new(&message, None, Some(t.clone()), now))
                    }
                    _ => {}
                }
            }
        }
        let added = self.inner.store.add_deliveries(fresh, self.owner()).await?;
        self.schedule(&added, Some(Arc::new(message))).await?;
        Ok(added)
    }

    /// Cancels a message's pending deliveries (or one of them).
    pub async fn cancel(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        delivery: Option<&DeliveryId>,
    ) -> EngineResult<Vec<DeliveryId>> {
        let (_, deliveries) = self.message(tenant, id).await?;
        let ids: Vec<DeliveryId> = deliveries
            .iter()
            .filter(|d| delivery.is_none_or(|one| &d.id == one))
            .filter(|d| d.status.is_open())
            .map(|d| d.id.clone())
            .collect();
        if let Some(one) = delivery {
            if !deliveries.iter().any(|d| &d.id == one) {
                return Err(EngineError::NotFound("delivery"));
            }
        }
        let cancelled = self.inner.store.cancel_deliveries(&ids, now_ms()).await?;
        self.send(Command::Close(cancelled.clone()));
        Ok(cancelled)
    }

    /// Replays dead letters: pending again with a fresh attempt budget.
    pub async fn replay(
        &self,
        tenant: &TenantId,
        selector: ReplaySelector,
    ) -> EngineResult<Vec<Delivery>> {
        let replayed = self
            .inner
            .store
            .replay(tenant, selector, self.owner(), now_ms())
            .await?;
        self.schedule(&replayed, None).await?;
        Ok(replayed)
    }

    /// Refuses a target URL that is a literal internal address (names are checked
    /// on every connection).
    pub(crate) fn check_target(&self, url: &str, field: &str) -> EngineResult<()> {
        Ok(herald_core::network::check_url(
            url,
            &self.inner.config.allow_networks,
            field,
        )?)
    }

    pub async fn create_endpoint(&self, endpoint: Endpoint) -> EngineResult<()> {
        self.check_target(&endpoint.url, "url")?;
        self.inner
            .store
            .create_endpoint(endpoint.clone())
            .await
            .map_err(|e| match e {
                StoreError::NotFound => EngineError::NotFound("tenant"),
                other => other.into(),
            })?;
        let (id, tenant) = (endpoint.id.clone(), endpoint.tenant_id.clone());
        self.inner
            .cache
            .set_endpoint(&id, &tenant, Some(Arc::new(endpoint)));
        Ok(())
    }

    pub async fn endpoint(
        &self,
        tenant: &TenantId,
        id: &EndpointId,
    ) -> EngineResult<Arc<Endpoint>> {
        self.inner
            .cache
            .endpoint(id)
            .await?
            .filter(|e| &e.tenant_id == tenant)
            .ok_or(EngineError::NotFound("endpoint"))
    }

    pub async fn update_endpoint(&self, endpoint: Endpoint) -> EngineResult<()> {
        self.check_target(&endpoint.url, "url")?;
        self.inner.store.update_endpoint(endpoint.clone()).await?;
        let (id, tenant) = (endpoint.id.clone(), endpoint.tenant_id.clone());
        let endpoint = Arc::new(endpoint);
        self.inner
            .cache
            .set_endpoint(&id, &tenant, Some(endpoint.clone()));
        self.send(Command::EndpointChanged(id, Some(endpoint)));
        Ok(())
    }

    /// Deletes an endpoint and cancels its pending deliveries.
    pub async fn delete_endpoint(&self, tenant: &TenantId, id: &EndpointId) -> EngineResult<()> {
        self.endpoint(tenant, id).await?;
        let cancelled = self.inner.store.delete_endpoint(id).await?;
        self.inner.cache.set_endpoint(id, tenant, None);
        self.send(Command::Close(cancelled));
        self.send(Command::EndpointChanged(id.clone(), None));
        Ok(())
    }

    pub async fn update_tenant(&self, tenant: Tenant) -> EngineResult<()> {
        let id = tenant.id.clone();
        self.inner.store.update_tenant(tenant).await?;
        self.inner.cache.forget_tenant(&id);
        Ok(())
    }

    /// Deletes a tenant with everything it owns.
    pub async fn delete_tenant(&self, id: &TenantId) -> EngineResult<()> {
        let open = self.inner.store.delete_tenant(id).await?;
        self.inner.cache.forget_tenant(id);
        self.send(Command::Close(open));
        Ok(())
    }

    /// The API token with this hash, if it exists (found tokens are kept in memory).
    pub async fn find_token(&self, hash: &str) -> EngineResult<Option<ApiToken>> {
        Ok(self.inner.cache.token(hash).await?)
    }

    /// Revokes a tenant's token: no process accepts it once this returns (other
    /// processes sharing the store, once they hear of it: milliseconds).
    pub async fn revoke_token(&self, tenant: &TenantId, id: &str) -> EngineResult<()> {
        self.inner.store.delete_token(tenant, id).await?;
        self.inner.cache.forget_token(id);
        Ok(())
    }

    /// Follows the changes to tenants, endpoints and tokens that the store announces (made
    /// by any process sharing it) until `shutdown`: the caches forget them and the
    /// scheduler gets changed endpoints anew. Returns at once on a store that only
    /// this process writes.
    pub async fn follow_config(&self, shutdown: CancellationToken) {
        let taken = self
            .inner
            .config_changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut changes) = taken else {
            return;
        };
        loop {
            let change = tokio::select! {
                () = shutdown.cancelled() => return,
                change = changes.recv() => change,
            };
            let kind = match change {
                Ok(ConfigChange::Tenant(id)) => {
                    self.inner.cache.forget_tenant(&id);
                    "tenant"
                }
                Ok(ConfigChange::Endpoint { tenant_id, id }) => {
                    self.endpoint_changed(&id, &tenant_id).await;
                    "endpoint"
                }
                Ok(ConfigChange::Token { id, .. }) => {
                    self.inner.cache.forget_token(&id);
                    "token"
                }
                Ok(ConfigChange::Any) | Err(RecvError::Lagged(_)) => {
                    for (id, tenant) in self.inner.cache.forget_all() {
                        self.endpoint_changed(&id, &tenant).await;
                    }
                    "any"
                }
                Err(RecvError::Closed) => return,
            };
            self.inner
                .metrics
                .config_changes
                .get_or_create(&crate::metrics::KindLabel { kind: kind.into() })
                .inc();
        }
    }

    async fn endpoint_changed(&self, id: &EndpointId, tenant: &TenantId) {
        match self.inner.cache.reload_endpoint(id, tenant).await {
            Ok(endpoint) => self.send(Command::EndpointChanged(id.clone(), endpoint)),
            Err(e) => {
                tracing::warn!(endpoint_id = %id, error = %e, "cannot read a changed endpoint")
            }
        }
    }
}
