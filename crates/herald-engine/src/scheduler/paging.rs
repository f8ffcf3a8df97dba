//! A lane's backlog in the store, read back a page at a time as its window
//! drains: the half of the scheduler that keeps memory bounded.

use std::cmp::Reverse;
use std::sync::Arc;

use herald_store::Millis;

use super::lane::{Backlog, LaneKey};
use super::{Command, Job, Scheduler};

/// How long a lane waits before reading its backlog again after a failed read.
const PAGE_RETRY_MS: Millis = 1000;

impl Scheduler {
    /// Reads the next page of a lane's backlog when its window has drained to half.
    pub(super) fn page_in(&mut self, key: &LaneKey) {
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        let window = self.config.lane_window;
        let (held, in_flight, ordered) = (lane.held, lane.in_flight, lane.is_ordered());
        let Backlog::InStore {
            fetching: fetching @ false,
            missed,
            finished,
        } = &mut lane.backlog
        else {
            return;
        };
        if held > window / 2 {
            return;
        }
        *fetching = true;
        *missed = false;
        finished.clear();
        // The held and in-flight ones come back too (they are skipped): ask for
        // enough to fill the window past them.
        let limit = (window + held + in_flight as usize) as u32;
        let (ctx, replies, lane) = (self.worker.clone(), self.replies.clone(), key.clone());
        tokio::spawn(async move {
            let read = ctx
                .store
                .owned_deliveries(&ctx.node, lane.as_ref(), ordered, limit)
                .await;
            let (jobs, last) = match read {
                Ok(rows) => {
                    let last = rows.len() < limit as usize;
                    let jobs = rows
                        .into_iter()
                        .map(|(d, m)| Job::from_delivery(&d, Some(Arc::new(m))))
                        .collect::<Vec<_>>();
                    (Some(jobs), last)
                }
                Err(e) => {
                    tracing::warn!(lane = ?lane, error = %e, "cannot read a lane's backlog; trying again");
                    (None, false)
                }
            };
            let _ = replies.send(Command::Paged { lane, jobs, last });
        });
    }

    pub(super) fn paged(&mut self, key: LaneKey, jobs: Option<Vec<Job>>, last: bool, now: Millis) {
        let Some(lane) = self.lanes.get_mut(&key) else {
            return;
        };
        let Backlog::InStore {
            missed, finished, ..
        } = std::mem::take(&mut lane.backlog)
        else {
            return;
        };
        let Some(jobs) = jobs else {
            lane.backlog = Backlog::InStore {
                fetching: false,
                missed: true,
                finished: Default::default(),
            };
            self.wakes.push(Reverse((now + PAGE_RETRY_MS, key)));
            return;
        };
        if !last || missed {
            lane.backlog = Backlog::InStore {
                fetching: false,
                missed: false,
                finished: Default::default(),
            };
        }
        for job in jobs {
            if !self.known.contains_key(&job.delivery_id) && !finished.contains(&job.delivery_id) {
                self.take(job, now);
            }
        }
        self.mark_runnable(&key);
    }
}
