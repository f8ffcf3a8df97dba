//! herald's runtime: the one ingest function every inbound path calls, the
//! scheduler that hands due deliveries to workers, the workers that sign, send and
//! classify, and the operations that change what is scheduled (replay, resend,
//! cancel, endpoint and tenant changes).
//!
//! # Data flow
//! `ingest` validates nothing itself (callers hand it parsed domain values), fans the
//! message out to the tenant's subscribed endpoints, commits message and deliveries in
//! one store transaction (group-committed with other callers), and only then passes
//! the new deliveries to the scheduler in memory. Workers record each attempt and the
//! delivery's next state in the store before telling the scheduler.
//!
//! # Errors
//! [`EngineError`] separates what the caller did wrong (`Invalid`, `NotFound`,
//! `Conflict`) from the store failing (`Store`), so adapters map each to a status.

mod breaker;
mod cache;
mod http;
mod lifecycle;
pub mod metrics;
mod operations;
mod scheduler;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_core::delivery::{AdHocTarget, DeliveryStatus};
use herald_core::endpoint::{Endpoint, EndpointDefaults};
use herald_core::filter::subscribed;
use herald_core::message::ParsedMessage;
use herald_core::retry::RetryPolicy;
use herald_core::{EndpointId, MessageId, TenantId, ValidationError};
use herald_store::prelude::*;
use herald_store::{
    ConfigChange, Delivery, Ingest, IngestResult, NodeId, StoreError, StoredMessage, Tenant,
};
use tokio::sync::mpsc;

pub use breaker::BreakerConfig;
pub use scheduler::SchedulerConfig;

use cache::Cache;
use scheduler::{now_ms, Command, Job};
use worker::WorkerCtx;

/// The tenant ad-hoc callbacks are stored under.
pub const CALLBACK_TENANT: &str = "default";

/// The engine's settings, resolved from configuration by the binary.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub default_retry_policy: RetryPolicy,
    /// Cap on a receiver's `Retry-After`, in seconds.
    pub max_retry_after_seconds: f64,
    pub scheduler: SchedulerConfig,
    pub user_agent: String,
    /// Response bytes kept in the attempt log.
    pub response_body_limit: usize,
    pub adhoc_connect_timeout_seconds: f64,
    pub adhoc_timeout_seconds: f64,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    pub endpoint_defaults: EndpointDefaults,
    /// A claim's lease lasts the endpoint's total timeout plus this many seconds.
    pub lease_margin_seconds: f64,
    /// A node whose heartbeat is older than this is dead: others adopt its work.
    pub node_timeout: Duration,
    /// How often a node looks for orphaned work when nothing wakes it sooner.
    pub poll_interval: Duration,
    /// Finished messages older than this are deleted, with their deliveries and attempts.
    pub retention: Duration,
    /// Attempt logs older than this are deleted, whatever their message.
    pub attempt_retention: Duration,
    /// How often the janitor runs.
    pub janitor_interval: Duration,
    /// Networks the SSRF guard lets through (everything internal is refused else).
    pub allow_networks: Vec<herald_core::network::Cidr>,
}

impl EngineConfig {
    /// How long a claim holds a delivery whose tries time out after `timeout_seconds`.
    pub(crate) fn lease_ms(&self, timeout_seconds: f64) -> i64 {
        ((timeout_seconds + self.lease_margin_seconds) * 1000.0) as i64
    }

    /// The timeout of an ad-hoc callback's tries.
    pub(crate) fn adhoc_timeout(&self, target: &AdHocTarget) -> f64 {
        target.timeout_seconds.unwrap_or(self.adhoc_timeout_seconds)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_retry_policy: RetryPolicy::default(),
            max_retry_after_seconds: 3600.0,
            scheduler: SchedulerConfig {
                breaker: BreakerConfig::default(),
                max_concurrent_requests: 512,
                adhoc_max_in_flight: 32,
                lane_window: 5_000,
            },
            user_agent: format!("herald/{}", env!("CARGO_PKG_VERSION")),
            response_body_limit: 4096,
            adhoc_connect_timeout_seconds: 10.0,
            adhoc_timeout_seconds: 30.0,
            shutdown_grace: Duration::from_secs(30),
            endpoint_defaults: EndpointDefaults::default(),
            lease_margin_seconds: 30.0,
            node_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(30 * 86_400),
            attempt_retention: Duration::from_secs(7 * 86_400),
            janitor_interval: Duration::from_secs(60),
            allow_networks: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => EngineError::NotFound("resource"),
            StoreError::Conflict(m) => EngineError::Conflict(m),
            other => EngineError::Store(other),
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Circuit breaker states by endpoint, written by the scheduler when one changes.
#[derive(Default)]
pub(crate) struct Circuits(Mutex<HashMap<EndpointId, &'static str>>);

impl Circuits {
    pub(crate) fn set(&self, endpoint: &EndpointId, state: &'static str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if state == "closed" {
            map.remove(endpoint);
        } else {
            map.insert(endpoint.clone(), state);
        }
    }
}

/// A message and its deliveries as ingest left them.
#[derive(Clone, Debug)]
pub struct Ingested {
    pub message: StoredMessage,
    pub deliveries: Vec<Delivery>,
    /// False when the idempotency key returned an earlier message.
    pub created: bool,
}

/// The running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    metrics: Arc<metrics::Metrics>,
    /// This process, as the store knows it.
    node: NodeId,
    /// Whether this process delivers: then what it commits is its own to send.
    delivering: AtomicBool,
    store: Arc<dyn Store>,
    cache: Arc<Cache>,
    config: Arc<EngineConfig>,
    commands: mpsc::UnboundedSender<Command>,
    circuits: Arc<Circuits>,
    /// Taken by the one `run_workers` call.
    scheduler: Mutex<Option<(mpsc::UnboundedReceiver<Command>, Arc<WorkerCtx>)>>,
    /// Taken by the one `follow_config` call; subscribed at once, so no change
    /// made after the engine exists is missed.
    config_changes: Mutex<Option<tokio::sync::broadcast::Receiver<ConfigChange>>>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, config: EngineConfig) -> Self {
        let config = Arc::new(config);
        let cache = Arc::new(Cache::new(store.clone()));
        let (commands, receiver) = mpsc::unbounded_channel();
        let node = NodeId::new();
        let metrics = Arc::new(metrics::Metrics::new());
        let circuits = Arc::new(Circuits::default());
        let ctx = Arc::new(WorkerCtx {
            metrics: metrics.clone(),
            node: node.clone(),
            store: store.clone(),
            cache: cache.clone(),
            http: http::HttpClients::new(config.allow_networks.clone()),
            config: config.clone(),
            circuits: circuits.clone(),
        });
        Self {
            inner: Arc::new(Inner {
                metrics,
                node,
                delivering: AtomicBool::new(false),
                cache,
                config,
                commands,
                scheduler: Mutex::new(Some((receiver, ctx))),
                circuits,
                config_changes: Mutex::new(store.config_changes()),
                store,
            }),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.inner.metrics
    }

    /// The endpoint's circuit breaker in this process: `closed`, `open` or
    /// `half_open`.
    pub fn circuit(&self, endpoint: &EndpointId) -> &'static str {
        self.inner
            .circuits
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(endpoint)
            .copied()
            .unwrap_or("closed")
    }

    /// Commits a delivery this process will send already claimed, with the lease a
    /// claim before its first try would take: its first try then needs no claim of
    /// its own. Only when this process delivers; never for ordered endpoints, whose
    /// claim checks the order.
    fn claim_at_ingest(&self, delivery: &mut Delivery, timeout_seconds: f64) {
        if self.owner().is_some() {
            delivery.status = DeliveryStatus::Delivering;
            delivery.claimed_until =
                Some(delivery.created_at + self.inner.config.lease_ms(timeout_seconds));
        }
    }

    /// The owner of what this process commits: itself when it delivers, else nobody
    /// (and a delivering process adopts it).
    fn owner(&self) -> Option<&NodeId> {
        self.inner
            .delivering
            .load(Ordering::Acquire)
            .then_some(&self.inner.node)
    }

    fn send(&self, command: Command) {
        // A process that does not deliver has no scheduler to tell: what it commits
        // belongs to nobody, and a delivering process adopts it from the store.
        if self.inner.delivering.load(Ordering::Acquire) {
            let _ = self.inner.commands.send(command);
        }
    }

    async fn jobs(
        &self,
        deliveries: &[Delivery],
        message: Option<Arc<StoredMessage>>,
    ) -> EngineResult<Vec<(Job, Option<Arc<Endpoint>>)>> {
        let mut jobs = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            let endpoint = match &d.endpoint_id {
                Some(id) => self.inner.cache.endpoint(id).await?,
                None => None,
            };
            jobs.push((Job::from_delivery(d, message.clone()), endpoint));
        }
        Ok(jobs)
    }

    async fn schedule(
        &self,
        deliveries: &[Delivery],
        message: Option<Arc<StoredMessage>>,
    ) -> EngineResult<()> {
        let jobs = self.jobs(deliveries, message).await?;
        if !jobs.is_empty() {
            self.send(Command::Schedule(jobs));
        }
        Ok(())
    }

    /// The one ingest path: fans a message out to the tenant's subscribed, active
    /// endpoints and commits it with its deliveries.
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        message: ParsedMessage,
    ) -> EngineResult<Ingested> {
        let entry = self
            .inner
            .cache
            .tenant(tenant)
            .await?
            .ok_or(EngineError::NotFound("tenant"))?;
        let chosen: Vec<&Arc<Endpoint>> = match &message.endpoint_ids {
            Some(ids) => {
                let mut chosen = Vec::with_capacity(ids.len());
                for (i, id) in ids.iter().enumerate() {
                    let endpoint =
                        entry
                            .endpoints
                            .iter()
                            .find(|e| &e.id == id)
                            .ok_or_else(|| {
                                ValidationError::new(
                                    format!("endpoint_ids[{i}]"),
                                    "no such endpoint in this tenant",
                                )
                            })?;
                    chosen.push(endpoint);
                }
                chosen
            }
            None => entry.endpoints.iter().collect(),
        };
        let stored = stored_message(tenant, &message);
        let now = stored.created_at;
        let targets: Vec<&Arc<Endpoint>> = chosen
            .into_iter()
            .filter(|e| e.active && subscribed(&e.event_types, &message.event_type))
            .collect();
        let ordered = targets
            .iter()
            .any(|e| e.mode == herald_core::endpoint::DeliveryMode::Ordered);
        let deliveries = targets
            .into_iter()
            .map(|e| {
                let mut d = Delivery::new(&stored, Some(e.id.clone()), None, now);
                if e.mode == herald_core::endpoint::DeliveryMode::Concurrent {
                    self.claim_at_ingest(&mut d, e.timeout_seconds);
                }
                d
            })
            .collect();
        self.commit(stored, deliveries, ordered).await
    }

    /// An ad-hoc callback (seed 000): one delivery to the URL given with the
    /// message, under the callbacks tenant (made when missing).
    pub async fn callback(
        &self,
        message: ParsedMessage,
        target: AdHocTarget,
    ) -> EngineResult<Ingested> {
        let tenant = TenantId::from_stored(CALLBACK_TENANT.into());
        if self.inner.cache.tenant(&tenant).await?.is_none() {
            let now = now_ms();
            let created = self
                .inner
                .store
                .create_tenant(Tenant {
                    id: tenant.clone(),
                    name: "Ad-hoc callbacks".into(),
                    retry_policy: None,
                    created_at: now,
                    updated_at: now,
                })
                .await;
            match created {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.ingest_adhoc(&tenant, message, target).await
    }

    /// A message of `tenant` delivered to one ad-hoc target instead of the tenant's
    /// endpoints (seed 003's `target_url`).
    pub async fn ingest_adhoc(
        &self,
        tenant: &TenantId,
        message: ParsedMessage,
        target: AdHocTarget,
    ) -> EngineResult<Ingested> {
        self.check_target(&target.url, "target_url")?;
        self.inner
            .cache
            .tenant(tenant)
            .await?
            .ok_or(EngineError::NotFound("tenant"))?;
        let timeout = self.inner.config.adhoc_timeout(&target);
        let stored = stored_message(tenant, &message);
        let mut delivery = Delivery::new(&stored, None, Some(target), stored.created_at);
        self.claim_at_ingest(&mut delivery, timeout);
        self.commit(stored, vec![delivery], false).await
    }

    async fn commit(
        &self,
        message: StoredMessage,
        deliveries: Vec<Delivery>,
        ordered: bool,
    ) -> EngineResult<Ingested> {
        let tenant = message.tenant_id.clone();
        match self
            .inner
            .store
            .ingest(
                Ingest {
                    message: message.clone(),
                    deliveries,
                    ordered,
                },
                self.owner(),
            )
            .await?
        {
            IngestResult::Created(deliveries) => {
                let message = Arc::new(message);
                self.schedule(&deliveries, Some(message.clone())).await?;
                Ok(Ingested {
                    message: Arc::unwrap_or_clone(message),
                    deliveries,
                    created: true,
                })
            }
            IngestResult::Duplicate(id) => {
                let (message, deliveries) = self.message(&tenant, &id).await?;
                Ok(Ingested {
                    message,
                    deliveries,
                    created: false,
                })
            }
        }
    }

    /// A message of the tenant with its deliveries.
    pub async fn message(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> EngineResult<(StoredMessage, Vec<Delivery>)> {
        let message = self
            .inner
            .store
            .get_message(tenant, id)
            .await?
            .ok_or(EngineError::NotFound("message"))?;
        let deliveries = self.inner.store.message_deliveries(tenant, id).await?;
        Ok((message, deliveries))
    }
}

fn stored_message(tenant: &TenantId, message: &ParsedMessage) -> StoredMessage {
    StoredMessage {
        id: MessageId::new(),
        tenant_id: tenant.clone(),
        event_type: message.event_type.as_str().to_string(),
        payload: message.payload.clone(),
        headers: message.headers.clone(),
        context: message.context.clone(),
        idempotency_key: message.idempotency_key.clone(),
        created_at: now_ms(),
    }
}
