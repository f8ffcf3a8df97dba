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

pub mod crypto;
mod model;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use herald_core::endpoint::Endpoint;
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
    #[error("postgres: {0}")]
    Postgres(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The storage every herald component shares: the four parts below, plus schema
/// and health. Bring the parts into scope with `use herald_store::prelude::*`.
#[async_trait]
pub trait Store:
    TenantStore + EndpointStore + MessageStore + WorkStore + StatsStore + TokenStore
{
    /// Brings the schema up to date; idempotent.
    async fn migrate(&self) -> StoreResult<()>;
    /// Whether the backend answers (readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// Every change to tenants, endpoints and API tokens, by any process, once
    /// committed (PostgreSQL's LISTEN/NOTIFY); `None` where no other process can write.
    fn config_changes(&self) -> Option<tokio::sync::broadcast::Receiver<ConfigChange>> {
        None
    }
}

/// Tenant-scoped API tokens, kept as SHA-256 hashes.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    async fn create_token(&self, token: ApiToken) -> StoreResult<()>;
    async fn list_tokens(&self, tenant: &TenantId) -> StoreResult<Vec<ApiToken>>;
    /// `NotFound` when the tenant has no such token.
    async fn delete_token(&self, tenant: &TenantId, id: &str) -> StoreResult<()>;
    async fn find_token(&self, hash: &str) -> StoreResult<Option<ApiToken>>;
}

/// What monitoring reads, and retention.
#[async_trait]
pub trait StatsStore: Send + Sync + 'static {
    /// Seed 003's per-tenant counters.
    async fn tenant_stats(&self, tenant: &TenantId) -> StoreResult<TenantStats>;
    /// Attempts since `since` (of one tenant, or all): counts by outcome and
    /// latency percentiles.
    async fn attempt_stats(
        &self,
        tenant: Option<&TenantId>,
        since: Millis,
    ) -> StoreResult<AttemptStats>;
    /// Each endpoint of a tenant that has tries since `since` or open or dead
    /// deliveries: its tries' counts and percentiles, its open and dead counts.
    async fn endpoint_stats(
        &self,
        tenant: &TenantId,
        since: Millis,
    ) -> StoreResult<Vec<EndpointStats>>;
    /// A tenant's tries since `since`, counted per second (seconds without tries
    /// left out), oldest first.
    async fn throughput(
        &self,
        tenant: &TenantId,
        since: Millis,
    ) -> StoreResult<Vec<ThroughputPoint>>;
    /// Open deliveries now: how many wait, how many are being sent, and the due
    /// time of the one waiting longest.
    async fn open_stats(&self, now: Millis) -> StoreResult<OpenStats>;
    /// Dead letters of every tenant (or one), newest first.
    async fn recent_failures(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>>;
    /// Deletes up to `limit` finished messages created before `messages_before`
    /// (with their deliveries and attempts) and up to `limit` attempts made before
    /// `attempts_before`. A message with an open delivery is never deleted.
    async fn purge(
        &self,
        messages_before: Millis,
        attempts_before: Millis,
        limit: u32,
    ) -> StoreResult<Purged>;
}

#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    /// `Conflict` when the id is taken.
    async fn create_tenant(&self, tenant: Tenant) -> StoreResult<()>;
    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>>;
    async fn list_tenants(&self, page: PageRequest) -> StoreResult<Page<Tenant>>;
    async fn update_tenant(&self, tenant: Tenant) -> StoreResult<()>;
    /// Deletes the tenant and everything it owns; returns the deliveries that were
    /// still open, for the scheduler to drop.
    async fn delete_tenant(&self, id: &TenantId) -> StoreResult<Vec<DeliveryId>>;
}

#[async_trait]
pub trait EndpointStore: Send + Sync + 'static {
    /// `NotFound` when the tenant does not exist.
    async fn create_endpoint(&self, endpoint: Endpoint) -> StoreResult<()>;
    async fn get_endpoint(&self, id: &EndpointId) -> StoreResult<Option<Endpoint>>;
    async fn list_endpoints(
        &self,
        tenant: &TenantId,
        page: PageRequest,
    ) -> StoreResult<Page<Endpoint>>;
    /// Every endpoint of the tenant, for fan-out.
    async fn tenant_endpoints(&self, tenant: &TenantId) -> StoreResult<Vec<Endpoint>>;
    async fn update_endpoint(&self, endpoint: Endpoint) -> StoreResult<()>;
    /// Deletes the endpoint and cancels its open deliveries (returned). Its dead
    /// letters stay, no longer replayable.
    async fn delete_endpoint(&self, id: &EndpointId) -> StoreResult<Vec<DeliveryId>>;
}

#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Commits a message and its deliveries in one transaction; the deliveries get
    /// their commit-order `seq` and belong to `owner` (the node that will send
    /// them), or to nobody when `None`. A repeated idempotency key returns the first
    /// message instead.
    async fn ingest(&self, ingest: Ingest, owner: Option<&NodeId>) -> StoreResult<IngestResult>;
    /// A message of the tenant (messages are found by tenant: SQLite keeps no
    /// index of message ids alone).
    async fn get_message(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> StoreResult<Option<StoredMessage>>;
    async fn list_messages(
        &self,
        tenant: &TenantId,
        filter: MessageFilter,
        page: PageRequest,
    ) -> StoreResult<Page<StoredMessage>>;
    /// The tenant of a message known only by its id (one probe per tenant on
    /// SQLite).
    async fn message_tenant(&self, id: &MessageId) -> StoreResult<Option<TenantId>>;
    async fn message_deliveries(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> StoreResult<Vec<Delivery>>;
    async fn get_delivery(&self, id: &DeliveryId) -> StoreResult<Option<Delivery>>;
    /// Adds deliveries to an existing message (resend); returns them with their `seq`.
    async fn add_deliveries(
        &self,
        deliveries: Vec<Delivery>,
        owner: Option<&NodeId>,
    ) -> StoreResult<Vec<Delivery>>;
    /// Cancels the open deliveries among `ids`; returns those it cancelled.
    async fn cancel_deliveries(
        &self,
        ids: &[DeliveryId],
        now: Millis,
    ) -> StoreResult<Vec<DeliveryId>>;
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
    /// attempt budget, owned by `owner`; returns them as they now are.
    async fn replay(
        &self,
        tenant: &TenantId,
        selector: ReplaySelector,
        owner: Option<&NodeId>,
        now: Millis,
    ) -> StoreResult<Vec<Delivery>>;
}

/// Who sends what. Every open delivery belongs to one node (`lease_owner`) or to
/// none. A node proves it lives by its heartbeat; the deliveries of a node whose
/// heartbeat is stale, and of none, are *orphans* that any node may adopt. Before
/// each try a node claims the delivery (`delivering`, with a lease that outlasts the
/// request); an outcome counts only while the claim is still the node's.
#[async_trait]
pub trait WorkStore: Send + Sync + 'static {
    /// Announces this node. The SQLite backend, whose file one process owns, also
    /// forgets every other node, so all their deliveries are orphans at once.
    async fn register_node(&self, node: &NodeId, now: Millis) -> StoreResult<()>;
    /// Keeps this node's deliveries its own.
    async fn heartbeat(&self, node: &NodeId, now: Millis) -> StoreResult<()>;
    /// Adopts up to `limit` orphans (in commit order): owner NULL, or an owner whose
    /// heartbeat is older than `stale_before`; an orphan still `delivering` only once
    /// its lease has ended. They become `pending` and `node`'s.
    async fn adopt_orphans(
        &self,
        node: &NodeId,
        now: Millis,
        stale_before: Millis,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>>;
    /// The first `limit` open deliveries of one lane (an endpoint, or the ad-hoc
    /// callbacks to one origin) that `node` owns, in the order it sends them: by
    /// due time, or by commit order (`seq`) when the lane is `ordered`. The
    /// scheduler pages a lane's backlog in through this, so a backlog costs disk,
    /// not memory; each comes with its message, ready to send.
    async fn owned_deliveries(
        &self,
        node: &NodeId,
        lane: LaneRef<'_>,
        ordered: bool,
        limit: u32,
    ) -> StoreResult<Vec<(Delivery, StoredMessage)>>;
    /// Claims a delivery for one try: `delivering`, leased until `lease_until`.
    /// `ordered` is the endpoint when it delivers in order: the claim then waits
    /// while an earlier delivery of that endpoint is open.
    async fn claim(
        &self,
        id: &DeliveryId,
        node: &NodeId,
        lease_until: Millis,
        ordered: Option<&EndpointId>,
    ) -> StoreResult<Claim>;
    /// Records one try and moves its delivery on, if `node` still holds the claim;
    /// otherwise (cancelled, deleted, claim lost) only the attempt is kept.
    async fn record_outcome(&self, outcome: Outcome, node: &NodeId) -> StoreResult<OutcomeApplied>;
    /// Signalled when another process committed work nobody owns yet (PostgreSQL's
    /// LISTEN/NOTIFY); `None` where no other process can write.
    fn work_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

/// Whether the message list walks the deliveries' `(tenant_id, status, message_id)`
/// index: filtered by a delivery status alone. With an event type as well, the
/// messages' `(tenant_id, event_type, id)` index leads and the status is checked
/// per message (`MESSAGE_HAS_STATUS`).
pub(crate) fn message_list_by_status(filter: &MessageFilter) -> bool {
    filter.status.is_some() && filter.event_type.is_none()
}

/// A message with a delivery in a status (one parameter).
pub(crate) const MESSAGE_HAS_STATUS: &str =
    "EXISTS (SELECT 1 FROM deliveries s WHERE s.tenant_id = messages.tenant_id \
     AND s.status = ? AND s.message_id = messages.id)";

/// Joins a delivery `d` to its message `m` (on SQLite messages are indexed by
/// tenant only).
pub(crate) const JOIN_MESSAGE: &str =
    "JOIN messages m ON m.tenant_id = d.tenant_id AND m.id = d.message_id";

/// A message's columns when joined as `m` after a delivery's, for `message_at`.
pub(crate) const JOINED_MESSAGE_COLUMNS: &str =
    "m.id, m.tenant_id, m.event_type, m.payload, m.headers, m.context, m.idempotency_key, m.created_at";

/// How the message list names its columns: `(tenant, id, message prefix)`, walking
/// the deliveries (`d`, joined to the messages as `m`) or the messages.
pub(crate) fn message_list_names(by_status: bool) -> (&'static str, &'static str, &'static str) {
    if by_status {
        ("d.tenant_id", "d.message_id", "m.")
    } else {
        ("tenant_id", "id", "")
    }
}

/// The message list's query around its conditions, newest first.
pub(crate) fn message_list_sql(
    columns: &str,
    conditions: &str,
    limit: i64,
    by_status: bool,
) -> String {
    if by_status {
        format!(
            "SELECT {columns} FROM messages WHERE (tenant_id, id) IN (SELECT d.tenant_id, d.message_id \
             FROM deliveries d {JOIN_MESSAGE} \
             WHERE {conditions} GROUP BY d.tenant_id, d.message_id ORDER BY d.message_id DESC LIMIT {limit}) \
             ORDER BY id DESC"
        )
    } else {
        format!("SELECT {columns} FROM messages WHERE {conditions} ORDER BY id DESC LIMIT {limit}")
    }
}

/// Convenient imports for callers of the store.
pub mod prelude {
    pub use crate::{
        EndpointStore, MessageStore, StatsStore, Store, TenantStore, TokenStore, WorkStore,
    };
}

/// Limits a page request to 1..=500 (default 50) and asks for one row more, to
/// know whether another page follows.
pub(crate) fn page_limit(page: &PageRequest) -> i64 {
    let limit = if page.limit == 0 {
        50
    } else {
        page.limit.min(500)
    };
    limit as i64 + 1
}

/// Cuts the extra row off and names the cursor of the next page.
pub(crate) fn paginate<T>(
    mut rows: Vec<T>,
    page: &PageRequest,
    id: impl Fn(&T) -> String,
) -> Page<T> {
    let wanted = (page_limit(page) - 1) as usize;
    let next_cursor = if rows.len() > wanted {
        rows.truncate(wanted);
        rows.last().map(id)
    } else {
        None
    };
    Page {
        data: rows,
        next_cursor,
    }
}

/// Opens the store a database URL names: `sqlite://PATH` (created when missing;
/// without a master key, the one in `PATH.key` is used or made) or
/// `postgres://...` (a pool of at most `pool_size` connections; the master key is
/// required, since every process must share it).
pub async fn open(
    url: &str,
    pool_size: u32,
    key: Option<crypto::MasterKey>,
) -> StoreResult<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = sqlite::SqliteStore::open(path, key).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let key = key.ok_or_else(|| {
            StoreError::Unavailable("a master key (HERALD_MASTER_KEY) is required with PostgreSQL: every process must share it".into())
        })?;
        return Ok(Arc::new(
            postgres::PgStore::open(url, pool_size, key).await?,
        ));
    }
    Err(StoreError::Unavailable(format!(
        "unsupported database URL scheme in `{}` (expected sqlite://PATH or postgres://...)",
        url.split("://").next().unwrap_or(url)
    )))
}
