//! The records the store keeps, and the requests that select them.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use herald_core::delivery::{AdHocTarget, DeliveryStatus};
use herald_core::retry::RetryPolicy;
use herald_core::{AttemptId, DeliveryId, EndpointId, MessageId, TenantId};
use serde::{Deserialize, Serialize};

/// Unix milliseconds: how every backend keeps time, cheap to compare and index.
pub type Millis = i64;

pub fn to_millis(t: DateTime<Utc>) -> Millis {
    t.timestamp_millis()
}

pub fn from_millis(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// One running herald process, as the store knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// A fresh id for this process: `node_<ULID>`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(format!("node_{}", ulid::Ulid::new()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A claimed delivery's tries so far: all a try needs of the stored row (the rest
/// the scheduler holds already), so a claim reads nothing else back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tries {
    pub attempts: u32,
    /// `attempts` when the current retry budget began (raised by replay).
    pub attempt_base: u32,
}

/// The answer to a claim before a try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The node may send; the delivery's tries so far.
    Claimed(Tries),
    /// An earlier delivery of the ordered endpoint is still open: ask again later.
    Blocked,
    /// The delivery is no longer this node's to send (closed, or adopted elsewhere).
    Lost,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// Default retry policy for the tenant's endpoints that set none.
    pub retry_policy: Option<RetryPolicy>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub event_type: String,
    /// Compact sorted JSON, exactly the bytes sent.
    pub payload: String,
    pub headers: BTreeMap<String, String>,
    pub context: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    pub created_at: Millis,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    /// `None` for an ad-hoc callback, which carries its `target` instead.
    pub endpoint_id: Option<EndpointId>,
    pub target: Option<AdHocTarget>,
    pub status: DeliveryStatus,
    /// HTTP tries made so far, the first included.
    pub attempts: u32,
    /// `attempts` when the current retry budget began (raised by replay).
    pub attempt_base: u32,
    pub next_attempt_at: Option<Millis>,
    pub last_error: Option<String>,
    pub dead_reason: Option<String>,
    pub dead_at: Option<Millis>,
    /// Commit order, assigned by the store: ordered endpoints deliver in this order.
    pub seq: i64,
    pub created_at: Millis,
    /// Set on a delivery committed already claimed (`delivering`) by the node that
    /// ingests it, leased until then: the hot path needs no separate claim. Only
    /// written, never read back.
    pub claimed_until: Option<Millis>,
}

impl Delivery {
    /// A new pending delivery due now.
    pub fn new(
        message: &StoredMessage,
        endpoint_id: Option<EndpointId>,
        target: Option<AdHocTarget>,
        now: Millis,
    ) -> Self {
        Self {
            id: DeliveryId::new(),
            message_id: message.id.clone(),
            tenant_id: message.tenant_id.clone(),
            endpoint_id,
            target,
            status: DeliveryStatus::Pending,
            attempts: 0,
            attempt_base: 0,
            next_attempt_at: Some(now),
            last_error: None,
            dead_reason: None,
            dead_at: None,
            seq: 0,
            created_at: now,
            claimed_until: None,
        }
    }

    /// The URL this delivery goes to, when it is ad hoc.
    pub fn adhoc_url(&self) -> Option<&str> {
        self.target.as_ref().map(|t| t.url.as_str())
    }
}

/// A message and its deliveries, committed together.
#[derive(Clone, Debug)]
pub struct Ingest {
    pub message: StoredMessage,
    pub deliveries: Vec<Delivery>,
    /// Some delivery goes to an ordered endpoint: its `seq` must follow commit
    /// order across processes (PostgreSQL then serialises such ingests).
    pub ordered: bool,
}

#[derive(Clone, Debug)]
pub enum IngestResult {
    /// Committed; the deliveries carry their commit `seq`.
    Created(Vec<Delivery>),
    /// The idempotency key was seen before: the first message's id.
    Duplicate(MessageId),
}

/// One HTTP try, as the attempt log keeps it (secrets redacted before it gets here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: AttemptId,
    pub delivery_id: DeliveryId,
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    pub endpoint_id: Option<EndpointId>,
    /// 1 for the first try.
    pub attempt: u32,
    pub method: String,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub response_status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Option<String>,
    /// The first 4 KiB of the body sent.
    #[serde(default)]
    pub request_body: Option<String>,
    /// The body sent was the message's payload, whole: the store keeps it once,
    /// with the message, and reads it back from there (a write may leave
    /// `request_body` empty then).
    #[serde(default)]
    pub request_body_is_payload: bool,
    pub duration_ms: u64,
    /// `success`, `retry` or `failed`.
    pub outcome: String,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub created_at: Millis,
}

/// Where a delivery goes after a try.
#[derive(Clone, Debug, PartialEq)]
pub enum NextState {
    Succeeded,
    Retry {
        at: Millis,
        error: String,
    },
    Dead {
        reason: String,
    },
    /// Dead, and its endpoint disabled with its other open deliveries dead-lettered.
    DisableEndpoint {
        endpoint_id: EndpointId,
        reason: String,
    },
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub attempt: Attempt,
    pub next: NextState,
    pub now: Millis,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OutcomeApplied {
    /// The delivery moved on; `also_dead` lists deliveries dead-lettered with it
    /// (`disable_endpoint`).
    Applied { also_dead: Vec<DeliveryId> },
    /// The delivery was closed meanwhile; only the attempt was kept.
    Stale,
}

/// A tenant, endpoint or API token changed by some process (this one included), as
/// announced by a store that several processes share.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigChange {
    Tenant(TenantId),
    Endpoint {
        tenant_id: TenantId,
        id: EndpointId,
    },
    /// An API token changed or was revoked (made ones need no announcement: nobody
    /// holds what was never found).
    Token {
        tenant_id: TenantId,
        id: String,
    },
    /// Announcements may have been missed (the listener was reconnecting): anything
    /// may have changed.
    Any,
}

/// A page request: newest first, `cursor` is the last id of the previous page.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct MessageFilter {
    pub event_type: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Messages with at least one delivery in this status.
    pub status: Option<DeliveryStatus>,
}

#[derive(Clone, Debug, Default)]
pub struct AttemptFilter {
    pub message_id: Option<MessageId>,
    pub endpoint_id: Option<EndpointId>,
    pub delivery_id: Option<DeliveryId>,
    pub outcome: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
}

#[derive(Clone, Debug, Default)]
pub struct DeadLetterFilter {
    pub endpoint_id: Option<EndpointId>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
}

/// A dead delivery as the dead-letter queue shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub delivery: Delivery,
    pub url: String,
    pub event_type: String,
    /// False once its endpoint was deleted.
    pub replayable: bool,
}

#[derive(Clone, Debug)]
pub enum ReplaySelector {
    One(DeliveryId),
    Bulk(DeadLetterFilter),
}

/// Seed 003's per-tenant statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TenantStats {
    /// Messages the tenant sent.
    pub total_events: u64,
    /// Deliveries that succeeded.
    pub successful_events: u64,
    /// Deliveries that failed for good (dead letters, cancelled ones excluded).
    pub failed_events: u64,
    /// Deliveries waiting for a retry (tried at least once, still open).
    pub pending_retries: u64,
    pub dead_letter_count: u64,
    /// Mean duration of the tenant's HTTP tries.
    pub avg_response_time_ms: f64,
    /// Time of the latest message or try.
    pub last_updated: Option<Millis>,
}

/// Attempts in a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AttemptStats {
    pub total: u64,
    pub success: u64,
    pub retry: u64,
    pub failed: u64,
    pub avg_ms: f64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

/// A scheduler lane, as the store finds its deliveries.
#[derive(Clone, Copy, Debug)]
pub enum LaneRef<'a> {
    Endpoint(&'a EndpointId),
    /// The ad-hoc callbacks to one origin (`herald_core::network::origin`).
    Origin(&'a str),
}

/// One endpoint's health: its tries in a window, and its deliveries now.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointStats {
    pub endpoint_id: EndpointId,
    pub attempts: AttemptStats,
    /// Open deliveries (waiting or being sent).
    pub open: u64,
    pub dead: u64,
}

/// Tries made in one second, by whether they succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ThroughputPoint {
    /// The second, in Unix milliseconds.
    pub at: Millis,
    pub success: u64,
    pub failure: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OpenStats {
    /// Open deliveries not being sent: pending, or left claimed past their lease.
    pub pending: u64,
    /// Open deliveries being sent: claimed, their lease running.
    pub delivering: u64,
    /// Due time of the pending delivery due longest ago (`None`: none is due).
    pub oldest_due: Option<Millis>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Purged {
    pub messages: u64,
    pub attempts: u64,
}

/// The smallest id of a kind (`prefix`) that could have been made at `at`: ids
/// are time-sortable, so `id < cutoff_id(…)` selects what was made before.
pub fn cutoff_id(prefix: &str, at: Millis) -> String {
    format!("{prefix}{}", ulid::Ulid::from_parts(at.max(0) as u64, 0))
}

/// The value at rank `p` (0..=1) of sorted `values`.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Counts and percentiles of attempts (outcome, duration).
pub(crate) fn summarise(tries: Vec<(String, u64)>) -> AttemptStats {
    let mut ms: Vec<u64> = tries.iter().map(|(_, d)| *d).collect();
    ms.sort_unstable();
    let count = |o: &str| tries.iter().filter(|(outcome, _)| outcome == o).count() as u64;
    AttemptStats {
        total: tries.len() as u64,
        success: count("success"),
        retry: count("retry"),
        failed: count("failed"),
        avg_ms: if ms.is_empty() {
            0.0
        } else {
            ms.iter().sum::<u64>() as f64 / ms.len() as f64
        },
        p50_ms: percentile(&ms, 0.50),
        p95_ms: percentile(&ms, 0.95),
        p99_ms: percentile(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(0),
    }
}

/// Per-endpoint stats from each endpoint's tries and its (open, dead) counts.
pub(crate) fn endpoint_stats(
    tries: BTreeMap<String, Vec<(String, u64)>>,
    mut counts: BTreeMap<String, (u64, u64)>,
) -> Vec<EndpointStats> {
    let mut ids: Vec<String> = tries.keys().chain(counts.keys()).cloned().collect();
    ids.sort();
    ids.dedup();
    let mut tries = tries;
    ids.into_iter()
        .map(|id| {
            let (open, dead) = counts.remove(&id).unwrap_or_default();
            EndpointStats {
                attempts: summarise(tries.remove(&id).unwrap_or_default()),
                endpoint_id: EndpointId::from_stored(id),
                open,
                dead,
            }
        })
        .collect()
}

/// A tenant-scoped API token; only its hash is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub tenant_id: TenantId,
    pub name: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub created_at: Millis,
}
