//! The scheduler: one task that decides when each open delivery of this process is
//! sent.
//!
//! Deliveries reach it in memory, straight from the commit that created or
//! rescheduled them (no polling in the hot path), and from the store at start. It
//! keeps one *lane* per endpoint (per origin for ad-hoc callbacks) so a slow, failing
//! or dead endpoint fills only its own lane: each lane has its own in-flight limit,
//! ordering, circuit breaker and rate limit, and a lane that may not send simply
//! waits without spending its deliveries' attempts.
//!
//! Memory holds at most a window of each lane's deliveries: past it, a delivery is
//! left to the store (where it is already committed, owned by this process), and the
//! lane pages the backlog back in, by due time, as its window drains. A million
//! deliveries waiting for a dead endpoint or origin cost disk, not memory.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use herald_core::endpoint::Endpoint;
use herald_core::{DeliveryId, EndpointId};
use herald_store::Millis;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::breaker::{BreakerConfig, Permit, Signal, TokenBucket};
use crate::worker::{self, WorkerCtx};

mod job;
mod lane;
mod paging;

pub(crate) use job::{Finished, Job};
use lane::{Backlog, Lane, LaneKey};

pub(crate) fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// What reaches the scheduler task: new work, finished work, and changes.
pub(crate) enum Command {
    /// Newly committed (or replayed) deliveries, with their endpoint when they have one.
    Schedule(Vec<(Job, Option<Arc<Endpoint>>)>),
    Finished(Box<Finished>),
    /// Deliveries closed elsewhere (cancelled, dead-lettered, deleted).
    Close(Vec<DeliveryId>),
    /// An endpoint's new settings; `None` when it was deleted.
    EndpointChanged(EndpointId, Option<Arc<Endpoint>>),
    /// A page of a lane's backlog read from the store (`None`: the read failed).
    Paged {
        lane: LaneKey,
        jobs: Option<Vec<Job>>,
        /// Fewer rows than asked for came: the store holds no more than these.
        last: bool,
    },
}

/// Settings the scheduler needs.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub breaker: BreakerConfig,
    /// Requests in flight across all lanes.
    pub max_concurrent_requests: usize,
    /// In-flight limit of one ad-hoc origin's lane.
    pub adhoc_max_in_flight: u32,
    /// Deliveries of one lane (endpoint, or ad-hoc origin) held in memory; the
    /// rest wait in the store.
    pub lane_window: usize,
}

pub(crate) struct Scheduler {
    commands: mpsc::UnboundedReceiver<Command>,
    replies: mpsc::UnboundedSender<Command>,
    config: SchedulerConfig,
    worker: Arc<WorkerCtx>,
    /// Every open delivery held here or in flight, with the generation of its
    /// current copy; a lane entry of another generation is stale and skipped.
    known: HashMap<DeliveryId, u64>,
    /// Schedules that arrived for a delivery already held, by id.
    deferred: HashMap<DeliveryId, (Job, Option<Arc<Endpoint>>)>,
    next_generation: u64,
    /// When to look at a lane again (a job comes due, a breaker or rate limit lets go).
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
            self.fire_wakes(now);
            self.pump(now);
            self.worker
                .metrics
                .scheduler_held
                .set(self.known.len() as i64);
            let next = self
                .wakes
                .peek()
                .map(|Reverse((at, _))| Duration::from_millis((at - now).max(0) as u64));
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
                for (mut job, endpoint) in jobs {
                    if self.known.contains_key(&job.delivery_id) {
                        // Held already (adopted or paged in while a copy is in
                        // flight): placed if the held copy ends without a retry,
                        // and claimed first, since that copy may have sent it.
                        job.claimed = false;
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
                    // Memory held the lane's first deliveries in the old order: with
                    // a backlog in the store, it is read again in the new one.
                    let in_store = matches!(lane.backlog, Backlog::InStore { .. });
                    if let Backlog::InStore { missed, .. } = &mut lane.backlog {
                        *missed = true;
                    }
                    for job in lane.drain() {
                        if !self.is_current(&job) {
                            continue;
                        }
                        if in_store {
                            self.known.remove(&job.delivery_id);
                        } else {
                            self.hold(job, now);
                        }
                    }
                }
                self.mark_runnable(&key);
            }
            Command::Paged { lane, jobs, last } => self.paged(lane, jobs, last, now),
        }
    }

    /// Takes a new delivery in, or leaves it to the store when its lane's window is
    /// full or the store holds later ones.
    fn admit(&mut self, job: Job, endpoint: Option<Arc<Endpoint>>, now: Millis) {
        let key = job.lane();
        let lane = self
            .lanes
            .entry(key.clone())
            .or_insert_with(|| Lane::new(endpoint, now));
        if lane.overflows(self.config.lane_window) {
            // Memory keeps what goes first: a delivery that goes before the last one
            // held takes its place, and that one waits in the store instead.
            let Some(evicted) = lane.give_way(&job) else {
                return;
            };
            if self.is_current(&evicted) {
                self.known.remove(&evicted.delivery_id);
            }
        }
        self.take(job, now);
    }

    /// Holds a job under a fresh generation.
    fn take(&mut self, mut job: Job, now: Millis) {
        job.generation = self.next_generation;
        self.next_generation += 1;
        self.known.insert(job.delivery_id.clone(), job.generation);
        self.hold(job, now);
    }

    /// Puts a held job in its lane.
    fn hold(&mut self, job: Job, now: Millis) {
        let key = job.lane();
        // An ad-hoc origin's lane is dropped while idle; a retry brings it back.
        // Endpoint lanes live as long as the process.
        let lane = match &key {
            LaneKey::Origin(_) => self
                .lanes
                .entry(key.clone())
                .or_insert_with(|| Lane::new(None, now)),
            LaneKey::Endpoint(_) => match self.lanes.get_mut(&key) {
                Some(lane) => lane,
                None => {
                    tracing::error!(delivery_id = %job.delivery_id, "no lane for a scheduled delivery");
                    return;
                }
            },
        };
        match lane.hold(job, now) {
            Some(at) => self.wakes.push(Reverse((at, key))),
            None => self.mark_runnable(&key),
        }
    }

    fn fire_wakes(&mut self, now: Millis) {
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
        let current = self.is_current(&job);
        let mut keep = false;
        if let Some(lane) = self.lanes.get_mut(&key) {
            lane.in_flight -= 1;
            lane.breaker.record(signal, now, &self.config.breaker);
            if endpoint.is_some() {
                lane.endpoint = endpoint;
            }
            // A retry stays in memory unless the store holds a backlog it joins;
            // an ordered lane keeps its head, whose order the backlog waits on.
            keep = matches!(lane.backlog, Backlog::None) || lane.is_ordered();
            if let Backlog::InStore {
                fetching,
                missed,
                finished,
            } = &mut lane.backlog
            {
                if *fetching {
                    finished.insert(job.delivery_id.clone());
                }
                *missed |= again_at.is_some() && !keep;
            }
        }
        match again_at {
            Some(at) if current => {
                self.deferred.remove(&job.delivery_id);
                if keep {
                    job.due = at;
                    job.message = None;
                    self.hold(job, now);
                } else {
                    self.known.remove(&job.delivery_id);
                }
            }
            _ => {
                if current {
                    self.known.remove(&job.delivery_id);
                    if let Some((job, endpoint)) = self.deferred.remove(&job.delivery_id) {
                        self.admit(job, endpoint, now);
                    }
                }
            }
        }
        self.report_circuit(&key);
        self.mark_runnable(&key);
    }

    /// Tells the engine when an endpoint's breaker changed state.
    fn report_circuit(&mut self, key: &LaneKey) {
        let (LaneKey::Endpoint(id), Some(lane)) = (key, self.lanes.get_mut(key)) else {
            return;
        };
        let state = lane.breaker.state_name();
        if lane.circuit != state {
            lane.circuit = state;
            self.worker.circuits.set(id, state);
        }
    }

    /// Sends what may be sent now, lane by lane.
    fn pump(&mut self, now: Millis) {
        while let Some(key) = self.runnable.pop_front() {
            if let Some(lane) = self.lanes.get_mut(&key) {
                lane.queued = false;
            }
            let dispatched = self.dispatch_lane(&key, now);
            self.page_in(&key);
            self.report_circuit(&key);
            if !dispatched {
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
        let Some(lane) = self.lanes.get_mut(key) else {
            return true;
        };
        if let Some(at) = lane.promote(now) {
            self.wakes.push(Reverse((at, key.clone())));
        }
        loop {
            let Some(lane) = self.lanes.get_mut(key) else {
                return true;
            };
            if lane.paused() || lane.in_flight >= lane.limit(self.config.adhoc_max_in_flight) {
                return true;
            }
            // The next candidate, skipping copies that were closed meanwhile.
            let candidate_due = match lane.peek() {
                None => return true,
                Some(job) if self.known.get(&job.delivery_id) != Some(&job.generation) => {
                    lane.pop();
                    continue;
                }
                Some(job) => job.due,
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
            let Some(job) = lane.pop() else { return true };
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
