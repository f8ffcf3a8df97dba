//! One lane: the deliveries of one endpoint (or of one ad-hoc origin) that this
//! process holds in memory, with what decides when the next may go: in-flight
//! limit, order, circuit breaker, rate limit. A lane holds at most a window of its
//! deliveries; the rest of a backlog stays in the store and is paged in as the
//! window drains.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashSet, VecDeque};
use std::sync::Arc;

use herald_core::endpoint::{DeliveryMode, Endpoint};
use herald_core::{DeliveryId, EndpointId};
use herald_store::Millis;

use super::Job;
use crate::breaker::{Breaker, TokenBucket};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum LaneKey {
    Endpoint(EndpointId),
    Origin(String),
}

impl Job {
    pub(crate) fn lane(&self) -> LaneKey {
        match (&self.endpoint_id, &self.target) {
            (Some(id), _) => LaneKey::Endpoint(id.clone()),
            (None, Some(t)) => LaneKey::Origin(
                url::Url::parse(&t.url)
                    .map(|u| u.origin().ascii_serialization())
                    .unwrap_or_else(|_| t.url.clone()),
            ),
            (None, None) => LaneKey::Origin(String::new()),
        }
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
    /// Deliveries of a concurrent lane not yet due.
    pub waiting: BinaryHeap<Reverse<Timed>>,
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
            waiting: BinaryHeap::new(),
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

    pub fn is_idle(&self) -> bool {
        self.held == 0 && self.in_flight == 0 && !self.breaker.is_open()
    }

    /// Holds a job. Returns the time to wake the lane at when the job is the
    /// lane's earliest not yet due.
    pub fn hold(&mut self, job: Job, now: Millis) -> Option<Millis> {
        self.held += 1;
        if self.is_ordered() {
            self.ordered.insert(job.seq, job);
            None
        } else if job.due <= now {
            self.ready.push_back(job);
            None
        } else {
            let due = job.due;
            let earliest = self.waiting.peek().is_none_or(|Reverse(t)| due < t.0.due);
            self.waiting.push(Reverse(Timed(job)));
            earliest.then_some(due)
        }
    }

    /// Moves what has come due from `waiting` to `ready`; returns when the next
    /// waiting job is due, when any moved.
    pub fn promote(&mut self, now: Millis) -> Option<Millis> {
        let mut moved = false;
        while self.waiting.peek().is_some_and(|Reverse(t)| t.0.due <= now) {
            if let Some(Reverse(Timed(job))) = self.waiting.pop() {
                self.ready.push_back(job);
                moved = true;
            }
        }
        if moved {
            self.waiting.peek().map(|Reverse(t)| t.0.due)
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

    /// Takes every held job out (the lane changed between ordered and concurrent).
    pub fn drain(&mut self) -> Vec<Job> {
        self.held = 0;
        self.ready
            .drain(..)
            .chain(
                std::mem::take(&mut self.waiting)
                    .into_iter()
                    .map(|Reverse(Timed(j))| j),
            )
            .chain(std::mem::take(&mut self.ordered).into_values())
            .collect()
    }
}

/// A job ordered by due time, then commit order.
pub(crate) struct Timed(pub Job);

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Timed {}
impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timed {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.0.due, self.0.seq).cmp(&(other.0.due, other.0.seq))
    }
}
