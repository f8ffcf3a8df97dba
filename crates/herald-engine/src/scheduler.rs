//! The scheduler: one task that owns every open delivery this process knows and
//! decides when each is sent.
//!
//! Deliveries reach it in memory, straight from the commit that created or
//! rescheduled them (no polling in the hot path), and from the store at start. It
//! keeps one *lane* per endpoint (per origin for ad-hoc callbacks) so a slow, failing
//! or dead endpoint fills only its own lane: each lane has its own in-flight limit,
//! ordering, circuit breaker and rate limit, and a lane that may not send simply
//! waits without spending its deliveries' attempts. Deliveries not yet due wait in a
//! min-heap of timers.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use herald_core::delivery::AdHocTarget;
use herald_core::endpoint::{DeliveryMode, Endpoint};
use herald_core::{DeliveryId, EndpointId, MessageId, TenantId};
use herald_store::{Millis, StoredMessage};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::breaker::{Breaker, BreakerConfig, Permit, Signal, TokenBucket};
use crate::worker::{self, WorkerCtx};

pub(crate) fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

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
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum LaneKey {
    Endpoint(EndpointId),
    Origin(String),
}

impl Job {
    fn lane(&self) -> LaneKey {
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

pub(crate) enum Command {
    /// Newly committed (or replayed) deliveries, with their endpoint when they have one.
    Schedule(Vec<(Job, Option<Arc<Endpoint>>)>),
    Finished(Box<Finished>),
    /// Deliveries closed elsewhere (cancelled, dead-lettered, deleted).
    Close(Vec<DeliveryId>),
    /// An endpoint's new settings; `None` when it was deleted.
    EndpointChanged(EndpointId, Option<Arc<Endpoint>>),
}

/// Settings the scheduler needs.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub breaker: BreakerConfig,
    /// Requests in flight across all lanes.
    pub max_concurrent_requests: usize,
    /// In-flight limit of one ad-hoc origin's lane.
    pub adhoc_max_in_flight: u32,
}

struct Lane {
    endpoint: Option<Arc<Endpoint>>,
    /// Due deliveries of a concurrent lane, oldest first.
    ready: VecDeque<Job>,
    /// Every delivery of an ordered lane, by commit order, due or not.
    ordered: BTreeMap<i64, Job>,
    in_flight: u32,
    breaker: Breaker,
    bucket: Option<TokenBucket>,
    queued: bool,
}

impl Lane {
    fn new(endpoint: Option<Arc<Endpoint>>, now: Millis) -> Self {
        let bucket = endpoint
            .as_ref()
            .and_then(|e| e.rate_limit_per_second)
            .map(|r| TokenBucket::new(r, now));
        Self {
            endpoint,
            ready: VecDeque::new(),
            ordered: BTreeMap::new(),
            in_flight: 0,
            breaker: Breaker::default(),
            bucket,
            queued: false,
        }
    }

    fn is_ordered(&self) -> bool {
        self.endpoint
            .as_ref()
            .is_some_and(|e| e.mode == DeliveryMode::Ordered)
    }

    fn limit(&self, adhoc: u32) -> u32 {
        self.endpoint.as_ref().map_or(adhoc, |e| e.concurrency())
    }

    fn paused(&self) -> bool {
        self.endpoint.as_ref().is_some_and(|e| !e.active)
    }

    fn is_idle(&self) -> bool {
        self.ready.is_empty()
            && self.ordered.is_empty()
            && self.in_flight == 0
            && !self.breaker.is_open()
    }
}

struct Timed(Job);

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

pub(crate) struct Scheduler {
    commands: mpsc::UnboundedReceiver<Command>,
    replies: mpsc::UnboundedSender<Command>,
    config: SchedulerConfig,
    worker: Arc<WorkerCtx>,
    /// Every open delivery held here, with the generation of its current copy;
    /// a heap or queue entry of another generation is stale and skipped.
    known: HashMap<DeliveryId, u64>,
    /// Schedules that arrived for a delivery already held, by id.
    deferred: HashMap<DeliveryId, (Job, Option<Arc<Endpoint>>)>,
    next_generation: u64,
    timers: BinaryHeap<Reverse<Timed>>,
    wakes: BinaryHeap<Reverse<(Millis, LaneKey)>>,
    lanes: HashMap<LaneKey, Lane>,
    runnable: VecDeque<LaneKey>,
    permits: Arc<Semaphore>,
    in_flight: usize,
    tracker: TaskTracker,
}

/// How long a paused scheduler sleeps when nothing is due.
const IDLE: Duration = Duration::from_secs(3600);

impl Scheduler {
    pub fn new(
        commands: mpsc::UnboundedReceiver<Command>,
        replies: mpsc::UnboundedSender<Command>,
        config: SchedulerConfig,
        worker: Arc<WorkerCtx>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(config.max_concurrent_requests.max(1)));
        Self {
            commands,
            replies,
            config,
            worker,
            known: HashMap::new(),
            deferred: HashMap::new(),
            next_generation: 1,
            timers: BinaryHeap::new(),
            wakes: BinaryHeap::new(),
            lanes: HashMap::new(),
            runnable: VecDeque::new(),
            permits,
            in_flight: 0,
            tracker: TaskTracker::new(),
        }
    }

    /// Runs until `shutdown`, then stops sending and waits up to `grace` for the
    /// requests in flight; what is left stays pending in the store.
    pub async fn run(mut self, shutdown: CancellationToken, grace: Duration) {
        loop {
            let now = now_ms();
            self.fire_timers(now);
            self.pump(now);
            let next = self
                .next_wake()
                .map(|at| Duration::from_millis((at - now).max(0) as u64));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                command = self.commands.recv() => {
                    let Some(command) = command else { break };
                    self.handle(command, now_ms());
                    for _ in 0..1024 {
                        match self.commands.try_recv() {
                            Ok(command) => self.handle(command, now_ms()),
                            Err(_) => break,
                        }
                    }
                }
                () = tokio::time::sleep(next.unwrap_or(IDLE)) => {}
            }
        }
        self.tracker.close();
        let waited = tokio::time::timeout(grace, self.tracker.wait()).await;
        if waited.is_err() {
            tracing::warn!(
                in_flight = self.in_flight,
                "shutdown grace ended with requests in flight; they stay pending"
            );
        }
    }

    fn next_wake(&self) -> Option<Millis> {
        let timer = self.timers.peek().map(|Reverse(t)| t.0.due);
        let wake = self.wakes.peek().map(|Reverse((at, _))| *at);
        match (timer, wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn is_current(&self, job: &Job) -> bool {
        self.known.get(&job.delivery_id) == Some(&job.generation)
    }

    fn mark_runnable(&mut self, key: &LaneKey) {
        if let Some(lane) = self.lanes.get_mut(key) {
            if !lane.queued {
                lane.queued = true;
                self.runnable.push_back(key.clone());
            }
        }
    }

    fn handle(&mut self, command: Command, now: Millis) {
        match command {
            Command::Schedule(jobs) => {
                for (job, endpoint) in jobs {
                    if self.known.contains_key(&job.delivery_id) {
                        // Held already (say, adopted while a copy is in flight):
                        // placed if the held copy ends without a retry.
                        self.deferred
                            .insert(job.delivery_id.clone(), (job, endpoint));
                        continue;
                    }
                    self.admit(job, endpoint, now);
                }
            }
            Command::Finished(finished) => self.finish(*finished, now),
            Command::Close(ids) => {
                for id in ids {
                    self.known.remove(&id);
                    self.deferred.remove(&id);
                }
            }
            Command::EndpointChanged(id, endpoint) => {
                let key = LaneKey::Endpoint(id);
                let Some(lane) = self.lanes.get_mut(&key) else {
                    return;
                };
                let was_ordered = lane.is_ordered();
                let rate = endpoint.as_ref().and_then(|e| e.rate_limit_per_second);
                lane.bucket = rate.map(|r| TokenBucket::new(r, now));
                lane.endpoint = endpoint;
                if lane.is_ordered() != was_ordered {
                    let jobs: Vec<Job> = lane
                        .ready
                        .drain(..)
                        .chain(std::mem::take(&mut lane.ordered).into_values())
                        .collect();
                    for job in jobs {
                        self.place(job, now);
                    }
                }
                self.mark_runnable(&key);
            }
        }
    }

    /// Puts a job where it waits: its ordered lane, its lane's ready queue, or a timer.
    fn place(&mut self, job: Job, now: Millis) {
        let key = job.lane();
        // An ad-hoc origin's lane is dropped while idle; a retry brings it back.
        // Endpoint lanes live as long as the process.
        if matches!(key, LaneKey::Origin(_)) {
            self.lanes
                .entry(key.clone())
                .or_insert_with(|| Lane::new(None, now));
        }
        let Some(lane) = self.lanes.get_mut(&key) else {
            tracing::error!(delivery_id = %job.delivery_id, "no lane for a scheduled delivery");
            return;
        };
        if lane.is_ordered() {
            lane.ordered.insert(job.seq, job);
        } else if job.due <= now {
            lane.ready.push_back(job);
        } else {
            self.timers.push(Reverse(Timed(job)));
            return;
        }
        self.mark_runnable(&key);
    }

    fn fire_timers(&mut self, now: Millis) {
        while self.timers.peek().is_some_and(|Reverse(t)| t.0.due <= now) {
            let Some(Reverse(Timed(job))) = self.timers.pop() else {
                break;
            };
            if self.is_current(&job) {
                self.place(job, now);
            }
        }
        while self.wakes.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            let Some(Reverse((_, key))) = self.wakes.pop() else {
                break;
            };
            self.mark_runnable(&key);
        }
    }

    fn finish(&mut self, finished: Finished, now: Millis) {
        let Finished {
            mut job,
            again_at,
            also_closed,
            signal,
            endpoint,
        } = finished;
        self.in_flight -= 1;
        for id in also_closed {
            self.known.remove(&id);
        }
        let key = job.lane();
        if let Some(lane) = self.lanes.get_mut(&key) {
            lane.in_flight -= 1;
            lane.breaker.record(signal, now, &self.config.breaker);
            if endpoint.is_some() {
                lane.endpoint = endpoint;
            }
        }
        match again_at {
            Some(at) if self.is_current(&job) => {
                self.deferred.remove(&job.delivery_id);
                job.due = at;
                job.message = None;
                self.place(job, now);
            }
            _ => {
                if self.is_current(&job) {
                    self.known.remove(&job.delivery_id);
                    if let Some((job, endpoint)) = self.deferred.remove(&job.delivery_id) {
                        self.admit(job, endpoint, now);
                    }
                }
            }
        }
        self.mark_runnable(&key);
    }

    /// Takes a delivery in: a fresh generation, its lane, its place.
    fn admit(&mut self, mut job: Job, endpoint: Option<Arc<Endpoint>>, now: Millis) {
        job.generation = self.next_generation;
        self.next_generation += 1;
        self.known.insert(job.delivery_id.clone(), job.generation);
        self.lanes
            .entry(job.lane())
            .or_insert_with(|| Lane::new(endpoint, now));
        self.place(job, now);
    }

    /// Sends what may be sent now, lane by lane.
    fn pump(&mut self, now: Millis) {
        while let Some(key) = self.runnable.pop_front() {
            if let Some(lane) = self.lanes.get_mut(&key) {
                lane.queued = false;
            }
            if !self.dispatch_lane(&key, now) {
                // Out of global permits: retry this lane first when one frees.
                if let Some(lane) = self.lanes.get_mut(&key) {
                    lane.queued = true;
                }
                self.runnable.push_front(key);
                return;
            }
            if self
                .lanes
                .get(&key)
                .is_some_and(|l| l.is_idle() && l.endpoint.is_none())
            {
                self.lanes.remove(&key);
            }
        }
    }

    /// Dispatches from one lane until it must wait; false when global permits ran out.
    fn dispatch_lane(&mut self, key: &LaneKey, now: Millis) -> bool {
        loop {
            let Some(lane) = self.lanes.get_mut(key) else {
                return true;
            };
            if lane.paused() || lane.in_flight >= lane.limit(self.config.adhoc_max_in_flight) {
                return true;
            }
            // The next candidate, skipping copies that were closed meanwhile.
            let candidate_due = if lane.is_ordered() {
                match lane.ordered.first_key_value() {
                    None => return true,
                    Some((_, job)) if self.known.get(&job.delivery_id) != Some(&job.generation) => {
                        lane.ordered.pop_first();
                        continue;
                    }
                    Some((_, job)) => job.due,
                }
            } else {
                match lane.ready.front() {
                    None => return true,
                    Some(job) if self.known.get(&job.delivery_id) != Some(&job.generation) => {
                        lane.ready.pop_front();
                        continue;
                    }
                    Some(job) => job.due,
                }
            };
            if candidate_due > now {
                self.wakes.push(Reverse((candidate_due, key.clone())));
                return true;
            }
            match lane.breaker.check(now) {
                Permit::Go => {}
                Permit::WaitUntil(at) => {
                    self.wakes.push(Reverse((at, key.clone())));
                    return true;
                }
                Permit::WaitForProbe => return true,
            }
            if let Some(bucket) = &mut lane.bucket {
                if let Err(at) = bucket.take(now) {
                    self.wakes.push(Reverse((at, key.clone())));
                    return true;
                }
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return false;
            };
            let job = if lane.is_ordered() {
                lane.ordered.pop_first().map(|(_, j)| j)
            } else {
                lane.ready.pop_front()
            };
            let Some(job) = job else { return true };
            lane.breaker.dispatched();
            lane.in_flight += 1;
            self.in_flight += 1;
            let endpoint = lane.endpoint.clone();
            self.spawn(job, endpoint, permit);
        }
    }

    fn spawn(&self, job: Job, endpoint: Option<Arc<Endpoint>>, permit: OwnedSemaphorePermit) {
        let ctx = self.worker.clone();
        let replies = self.replies.clone();
        self.tracker.spawn(async move {
            let fallback = job.clone();
            // A panic in one attempt must not leave its lane waiting forever.
            let finished = match tokio::spawn(worker::attempt(ctx, job, endpoint)).await {
                Ok(finished) => finished,
                Err(e) => {
                    tracing::error!(delivery_id = %fallback.delivery_id, error = %e, "delivery attempt panicked; retrying in 1 s");
                    Finished::later(fallback, now_ms() + 1000, Signal::Skipped)
                }
            };
            drop(permit);
            let _ = replies.send(Command::Finished(Box::new(finished)));
        });
    }
}
