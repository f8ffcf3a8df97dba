//! herald's storage: the [`Store`] trait every backend implements, and the records it
//! reads and writes.
//!
//! The store is the source of truth. Everything the engine and the API need goes
//! through this trait, so no backend's SQL dialect or threading model leaks out:
//! the SQLite backend writes through one thread that group-commits many callers'
//! writes in one transaction; a PostgreSQL backend implements the same methods.
//!
//! # Errors
//! Every method returns [`StoreError`]: `NotFound` and `Conflict` are the caller's to
//! branch on (404, 409); `Unavailable` means the backend could not be reached or
//! committed (503); `Corrupt` means a row could not be decoded (a bug or a bad
//! migration, 500).

mod model;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use herald_core::{DeliveryId, EndpointId, MessageId, TenantId};

pub use model::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored data could not be decoded: {0}")]
    Corrupt(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The storage every herald component shares.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Brings the schema up to date; idempotent.
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether the backend answers (readiness).
    async fn ping(&self) -> StoreResult<()>;

    // Tenants.
    /// `Conflict` when the id is taken.
    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<()>;
    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>>;
    async fn list_tenants(&self, page: PageRequest) -> StoreResult<Page<Tenant>>;
    async fn update_tenant(&self, tenant: Tenant) -> StoreResult<()>;
    /// Deletes the tenant and everything it owns; returns the deliveries that were
    /// still open, for the scheduler to drop.
    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<Vec<DeliveryId>>;

    // Endpoints.
    async fn create_endpoint(&self, endpoint: herald_core::endpoint::Endpoint) -> StoreResult<()>;
    async fn get_endpoint(
        &self,
        id: &EndpointId,
    ) -> StoreResult<Option<herald_core::endpoint::Endpoint>>;
    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<herald_core::endpoint::Endpoint>>;
    /// Every endpoint of the tenant, for fan-out.
    async fn tenant_endpoints(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Vec<herald_core::endpoint::Endpoint>>;
    async fn update_endpoint(&self, endpoint: herald_core::endpoint::Endpoint) -> StoreResult<()>;
    /// Deletes the endpoint and cancels its open deliveries (returned). Its dead
    /// letters stay, no longer replayable.
    async fn delete_endpoint(&self, id: &EndpointId) -> StoreResult<Vec<DeliveryId>>;
    /// Disables the endpoint with a reason and dead-letters its open deliveries.
    async fn disable_endpoint(
        &self,
        id: &EndpointId,
        reason: &str,
        now: Millis,
    ) -> StoreResult<Vec<DeliveryId>>;

    // Messages and deliveries.
    /// Commits a message and its deliveries in one transaction. A repeated
    /// idempotency key returns the first message instead.
    async fn ingest(&self, ingest: Ingest) -> StoreResult<IngestResult>;
    async fn get_message(&self, id: &MessageId) -> StoreResult<Option<StoredMessage>>;
    async fn list_messages(
        &self,
        tenant: &TenantId,
        filter: MessageFilter,
        page: PageRequest,
    ) -> StoreResult<Page<StoredMessage>>;
    async fn message_deliveries(&self, id: &MessageId) -> StoreResult<Vec<Delivery>>;
    async fn get_delivery(&self, id: &DeliveryId) -> StoreResult<Option<Delivery>>;
    /// Adds deliveries to an existing message (resend); returns them with their `seq`.
    async fn add_deliveries(&self, deliveries: Vec<Delivery>) -> StoreResult<Vec<Delivery>>;
    /// Cancels the open deliveries among `ids`; returns those it cancelled.
    async fn cancel_deliveries(
        &self,
        ids: &[DeliveryId],
        now: Millis,
    ) -> StoreResult<Vec<DeliveryId>>;

    // The engine.
    /// Records one try and moves its delivery on, unless the delivery was closed
    /// meanwhile (cancelled, endpoint deleted): then only the attempt is kept.
    async fn record_outcome(&self, outcome: Outcome) -> StoreResult<OutcomeApplied>;
    /// Open deliveries in commit order with `after_seq < seq <= up_to_seq`, for
    /// loading at start.
    async fn open_deliveries(
        &self,
        after_seq: i64,
        up_to_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>>;
    /// Takes back deliveries a previous run of this process left `delivering`, and
    /// returns the highest delivery `seq` so far: what is at or below it is loaded
    /// from the store, what comes after reaches the scheduler from ingest.
    async fn recover_in_flight(&self) -> StoreResult<i64>;

    // Attempts and dead letters.
    async fn list_attempts(
        &self,
        tenant: &TenantId,
        filter: AttemptFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Attempt>>;
    async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        filter: DeadLetterFilter,
        page: PageRequest,
    ) -> StoreResult<Page<DeadLetter>>;
    /// Makes the selected dead, replayable deliveries pending again with a fresh
    /// attempt budget; returns them as they now are.
    async fn replay(
        &self,
        tenant: &TenantId,
        selector: ReplaySelector,
        now: Millis,
    ) -> StoreResult<Vec<Delivery>>;
}

/// Opens the store a database URL names: `sqlite://PATH` (created when missing).
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = sqlite::SqliteStore::open(path).await?;
        return Ok(Arc::new(store));
    }
    Err(StoreError::Unavailable(format!(
        "unsupported database URL scheme in `{}` (expected sqlite://PATH)",
        url.split("://").next().unwrap_or(url)
    )))
}
