//! What the scheduler holds of a delivery, and what a worker tells it back.

use std::sync::Arc;

use herald_core::delivery::AdHocTarget;
use herald_core::endpoint::Endpoint;
use herald_core::{DeliveryId, EndpointId, MessageId, TenantId};
use herald_store::{Delivery, Millis, StoredMessage};

use super::lane::LaneKey;
use crate::breaker::Signal;

/// One open delivery, as the scheduler holds it.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub delivery_id: DeliveryId,
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    pub endpoint_id: Option<EndpointId>,
    pub target: Option<Arc<AdHocTarget>>,
    pub seq: i64,
    pub due: Millis,
    pub attempts: u32,
    pub attempt_base: u32,
    /// The message, when it came with the commit; dropped while a retry waits.
    pub message: Option<Arc<StoredMessage>>,
    pub generation: u64,
    /// Committed already claimed by this process: the next try needs no claim.
    pub claimed: bool,
    pub lane: LaneKey,
}

impl Job {
    /// The job of a delivery read from the store.
    pub(crate) fn from_delivery(d: &Delivery, message: Option<Arc<StoredMessage>>) -> Self {
        Job {
            delivery_id: d.id.clone(),
            message_id: d.message_id.clone(),
            tenant_id: d.tenant_id.clone(),
            endpoint_id: d.endpoint_id.clone(),
            target: d.target.clone().map(Arc::new),
            seq: d.seq,
            due: d.next_attempt_at.unwrap_or(0),
            attempts: d.attempts,
            attempt_base: d.attempt_base,
            message,
            generation: 0,
            claimed: d.claimed_until.is_some(),
            lane: LaneKey::of(d.endpoint_id.as_ref(), d.target.as_ref()),
        }
    }
}

/// What happened to a job a worker took.
pub(crate) struct Finished {
    pub job: Job,
    /// Send again at this time (a retry, or an attempt that could not be recorded).
    pub again_at: Option<Millis>,
    /// Deliveries closed along with this one (`disable_endpoint`).
    pub also_closed: Vec<DeliveryId>,
    /// The endpoint's new settings when the attempt changed them (`disable_endpoint`).
    pub endpoint: Option<Arc<Endpoint>>,
    pub signal: Signal,
}

impl Finished {
    /// Nothing more to send for this job.
    pub(crate) fn done(job: Job, signal: Signal) -> Self {
        Self {
            job,
            again_at: None,
            also_closed: Vec::new(),
            endpoint: None,
            signal,
        }
    }

    /// Send the job again at `at`.
    pub(crate) fn later(job: Job, at: Millis, signal: Signal) -> Self {
        Self {
            again_at: Some(at),
            ..Self::done(job, signal)
        }
    }
}
