//! One lane: the deliveries of one endpoint (or of one ad-hoc callback origin) that
//! this process holds in memory, with what decides when the next may go: in-flight
//! limit, order, circuit breaker, rate limit. A lane holds at most a window of its
//! deliveries; the rest of a backlog stays in the store and is paged in as the
//! window drains.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use herald_core::delivery::AdHocTarget;
use herald_core::endpoint::{DeliveryMode, Endpoint};
use herald_core::{DeliveryId, EndpointId};
use herald_store::{LaneRef, Millis};

use super::Job;
use crate::breaker::{Breaker, TokenBucket};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum LaneKey {
    Endpoint(EndpointId),
    Origin(String),
}

impl LaneKey {
    /// The lane as the store finds its deliveries.
    pub(crate) fn as_ref(&self) -> LaneRef<'_> {
        match self {
            LaneKey::Endpoint(id) => LaneRef::Endpoint(id),
            LaneKey::Origin(origin) => LaneRef::Origin(origin),
        }
    }
}

impl LaneKey {
    /// A delivery's lane: its endpoint's, or its ad-hoc target's origin (worked out
    /// once per job: it takes parsing the URL).
    pub(crate) fn of(endpoint_id: Option<&EndpointId>, target: Option<&AdHocTarget>) -> Self {
        match (endpoint_id, target) {
            (Some(id), _) => LaneKey::Endpoint(id.clone()),
            (None, Some(t)) => LaneKey::Origin(herald_core::network::origin(&t.url)),
            (None, None) => LaneKey::Origin(String::new()),
        }
    }
}

impl Job {
    pub(crate) fn lane(&self) -> LaneKey {
        self.lane.clone()
    }
}

/// Whether the store holds open deliveries of this lane that memory does not.
#[derive(Debug, Default)]
pub(crate) enum Backlog {
    /// Memory holds every open delivery of the lane this process owns.
    #[default]
    None,
    /// The store holds more: they are paged in as the window drains.
    InStore {
        /// A page is being read.
        fetching: bool,
        /// A delivery was left to the store while the page was read: the page
        /// may not have seen it, so it does not prove the store empty.
        missed: bool,
        /// Deliveries that finished while the page was read: the page may show
        /// them as they were before, so they are not taken from it.
        finished: HashSet<DeliveryId>,
    },
}

pub(crate) struct Lane {
    pub endpoint: Option<Arc<Endpoint>>,
    /// Due deliveries of a concurrent lane, oldest first.
    pub ready: VecDeque<Job>,
    /// Deliveries of a concurrent lane not yet due, by due time.
    pub waiting: BTreeMap<(Millis, i64, u64), Job>,
    /// Every held delivery of an ordered lane, by commit order, due or not.
    pub ordered: BTreeMap<i64, Job>,
    /// Entries in `ready`, `waiting` and `ordered`, stale copies included.
    pub held: usize,
    pub in_flight: u32,
    pub breaker: Breaker,
    pub bucket: Option<TokenBucket>,
    pub queued: bool,
    pub backlog: Backlog,
    /// The breaker state last reported to the engine.
    pub circuit: &'static str,
}

impl Lane {
    pub fn new(endpoint: Option<Arc<Endpoint>>, now: Millis) -> Self {
        let bucket = endpoint
            .as_ref()
            .and_then(|e| e.rate_limit_per_second)
            .map(|r| TokenBucket::new(r, now));
        Self {
            endpoint,
            ready: VecDeque::new(),
            waiting: BTreeMap::new(),
            ordered: BTreeMap::new(),
            held: 0,
            in_flight: 0,
            breaker: Breaker::default(),
            bucket,
            queued: false,
            backlog: Backlog::None,
            circuit: "closed",
        }
    }

    pub fn is_ordered(&self) -> bool {
        self.endpoint
            .as_ref()
            .is_some_and(|e| e.mode == DeliveryMode::Ordered)
    }

    pub fn limit(&self, adhoc: u32) -> u32 {
        self.endpoint.as_ref().map_or(adhoc, |e| e.concurrency())
    }

    pub fn paused(&self) -> bool {
        self.endpoint.as_ref().is_some_and(|e| !e.active)
    }

    /// Nothing held, in flight, waiting in the store or held back by the breaker.
    pub fn is_idle(&self) -> bool {
        self.held == 0
            && self.in_flight == 0
            && !self.breaker.is_open()
            && matches!(self.backlog, Backlog::None)
    }

    /// Holds a job. Returns the time to wake the lane at when the job is the
    /// lane's earliest not yet due.
    pub fn hold(&mut self, job: Job, now: Millis) -> Option<Millis> {
        self.held += 1;
        if self.is_ordered() {
            if self.ordered.insert(job.seq, job).is_some() {
                // A stale copy of the same delivery gave way.
                self.held -= 1;
            }
            None
        } else if job.due <= now {
            self.ready.push_back(job);
            None
        } else {
            let due = job.due;
            let earliest = self
                .waiting
                .first_key_value()
                .is_none_or(|(k, _)| due < k.0);
            self.waiting.insert((due, job.seq, job.generation), job);
            earliest.then_some(due)
        }
    }

    /// Moves what has come due from `waiting` to `ready`; returns when the next
    /// waiting job is due, when any moved.
    pub fn promote(&mut self, now: Millis) -> Option<Millis> {
        let mut moved = false;
        while self
            .waiting
            .first_key_value()
            .is_some_and(|(k, _)| k.0 <= now)
        {
            if let Some((_, job)) = self.waiting.pop_first() {
                self.ready.push_back(job);
                moved = true;
            }
        }
        if moved {
            self.waiting.first_key_value().map(|(k, _)| k.0)
        } else {
            None
        }
    }

    /// The next held job in sending order, without taking it.
    pub fn peek(&self) -> Option<&Job> {
        if self.is_ordered() {
            self.ordered.first_key_value().map(|(_, j)| j)
        } else {
            self.ready.front()
        }
    }

    /// Takes the job `peek` showed.
    pub fn pop(&mut self) -> Option<Job> {
        let job = if self.is_ordered() {
            self.ordered.pop_first().map(|(_, j)| j)
        } else {
            self.ready.pop_front()
        };
        if job.is_some() {
            self.held -= 1;
        }
        job
    }

    /// Whether a delivery that arrives now is left to the store: the store holds
    /// this lane's later deliveries already, or the window is full (from then on,
    /// it does). Either way the store may now hold one memory has not seen.
    pub fn overflows(&mut self, window: usize) -> bool {
        match &mut self.backlog {
            Backlog::InStore { missed, .. } => {
                *missed = true;
                true
            }
            Backlog::None if self.held >= window => {
                self.backlog = Backlog::InStore {
                    fetching: false,
                    missed: false,
                    finished: Default::default(),
                };
                true
            }
            Backlog::None => false,
        }
    }

    /// Makes room for `job` in a full window by giving up the held job that goes
    /// last, when `job` goes before it (by `seq` in an ordered lane, by due time
    /// in a concurrent one); `None` when `job` is the one to wait in the store.
    pub fn give_way(&mut self, job: &Job) -> Option<Job> {
        let evicted = if self.is_ordered() {
            let (&last, _) = self.ordered.last_key_value()?;
            (job.seq < last).then(|| self.ordered.pop_last().map(|(_, j)| j))?
        } else {
            let (&last, _) = self.waiting.last_key_value()?;
            (job.due < last.0).then(|| self.waiting.pop_last().map(|(_, j)| j))?
        };
        if evicted.is_some() {
            self.held -= 1;
        }
        evicted
    }

    /// Takes every held job out (the lane changed between ordered and concurrent).
    pub fn drain(&mut self) -> Vec<Job> {
        self.held = 0;
        self.ready
            .drain(..)
            .chain(std::mem::take(&mut self.waiting).into_values())
            .chain(std::mem::take(&mut self.ordered).into_values())
            .collect()
    }
}
