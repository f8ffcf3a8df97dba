//! Settling broker messages in the order the broker sent them, with as few frames as
//! it can: every commit is acked, but one `basic.ack` with `multiple` answers the
//! whole run of committed messages before it. RabbitMQ shares the machine, and one
//! ack frame per message was a large part of its work.
//!
//! A multiple ack answers every unsettled tag up to its own, so it may only cover
//! tags whose ingest is committed or that were already rejected or requeued on
//! their own; a message still being ingested stops the run. One task sends every
//! settlement, so a reject always leaves before an ack that covers later tags.

use std::collections::VecDeque;
use std::sync::Arc;

use herald_engine::metrics::Metrics;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::Acker;
use tokio::sync::mpsc;

/// What the consumer and the ingest tasks tell the settling task.
pub(crate) enum Report {
    /// The broker handed over this tag (told before its ingest starts).
    Received(u64),
    Ended(u64, Fate, Acker),
}

/// What became of one broker message.
pub(crate) enum Fate {
    Committed,
    /// Can never be ingested: reject without requeue.
    Poison(String),
    /// The store failed: back to the queue.
    Retry(String),
}

/// The tags received and not yet acked, oldest first, with what is known of each.
/// Pure: it says what to send and when; the task sends it.
#[derive(Debug)]
pub(crate) struct Window<A> {
    open: VecDeque<(u64, Mark<A>)>,
}

impl<A> Default for Window<A> {
    fn default() -> Self {
        Self {
            open: VecDeque::new(),
        }
    }
}

/// One multiple ack: its tag, that tag's acker, and how many commits it answers.
#[derive(Debug)]
pub(crate) struct Ready<A> {
    tag: u64,
    acker: A,
    commits: u64,
}

#[derive(Debug)]
enum Mark<A> {
    Ingesting,
    Committed(A),
    /// Rejected or requeued on its own already.
    Settled,
}

impl<A> Window<A> {
    pub(crate) fn received(&mut self, tag: u64) {
        self.open.push_back((tag, Mark::Ingesting));
    }

    pub(crate) fn committed(&mut self, tag: u64, acker: A) {
        self.mark(tag, Mark::Committed(acker));
    }

    pub(crate) fn settled(&mut self, tag: u64) {
        self.mark(tag, Mark::Settled);
    }

    fn mark(&mut self, tag: u64, mark: Mark<A>) {
        // Tags arrive in increasing order, so the window is sorted by tag.
        if let Ok(i) = self.open.binary_search_by_key(&tag, |(t, _)| *t) {
            self.open[i].1 = mark;
        }
    }

    /// The newest committed tag that one multiple ack may answer. The tags it
    /// answers leave the window, and so do those already settled on their own.
    pub(crate) fn ready(&mut self) -> Option<Ready<A>> {
        let mut ready: Option<Ready<A>> = None;
        while let Some((_, mark)) = self.open.front() {
            if matches!(mark, Mark::Ingesting) {
                break;
            }
            if let Some((tag, Mark::Committed(acker))) = self.open.pop_front() {
                let commits = ready.map_or(0, |r| r.commits) + 1;
                ready = Some(Ready {
                    tag,
                    acker,
                    commits,
                });
            }
        }
        ready
    }
}

/// A channel's settling task: takes what the ingest tasks report, in any order,
/// and settles it in tag order, one multiple ack for whatever has queued up
/// meanwhile. Ends when every sender is dropped, after sending what it can.
pub(crate) async fn run(mut reports: mpsc::UnboundedReceiver<Report>, metrics: Arc<Metrics>) {
    let mut window = Window::default();
    while let Some(first) = reports.recv().await {
        let mut next = Some(first);
        while let Some(report) = next {
            take(&mut window, report, &metrics).await;
            next = reports.try_recv().ok();
        }
        if let Some(Ready {
            tag,
            acker,
            commits,
        }) = window.ready()
        {
            metrics.amqp_messages("accepted", commits);
            sent(tag, acker.ack(BasicAckOptions { multiple: true }).await);
        }
    }
}

/// Notes a report; a message that was not committed is settled on its own at once.
async fn take(window: &mut Window<Acker>, report: Report, metrics: &Metrics) {
    let (tag, fate, acker) = match report {
        Report::Received(tag) => return window.received(tag),
        Report::Ended(tag, fate, acker) => (tag, fate, acker),
    };
    match fate {
        Fate::Committed => return window.committed(tag, acker),
        Fate::Poison(reason) => {
            tracing::warn!(delivery_tag = tag, reason = %reason, "rejecting an AMQP message that cannot be ingested");
            metrics.amqp_messages("rejected", 1);
            let options = BasicRejectOptions { requeue: false };
            sent(tag, acker.reject(options).await);
        }
        Fate::Retry(reason) => {
            tracing::warn!(delivery_tag = tag, reason = %reason, "store unavailable; the AMQP message goes back to the queue");
            metrics.amqp_messages("requeued", 1);
            let options = BasicNackOptions {
                requeue: true,
                multiple: false,
            };
            sent(tag, acker.nack(options).await);
        }
    }
    window.settled(tag);
}

fn sent(tag: u64, result: lapin::Result<bool>) {
    if let Err(e) = result {
        // The broker redelivers what was not settled.
        tracing::warn!(delivery_tag = tag, error = %e, "cannot settle an AMQP message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_run_of_commits_is_answered_by_its_newest_tag() {
        let mut w = Window::default();
        (1..=4).for_each(|t| w.received(t));
        w.committed(2, "a2");
        assert!(w.ready().is_none(), "tag 1 is still being ingested");
        w.committed(1, "a1");
        assert_eq!(w.ready().map(|r| (r.acker, r.commits)), Some(("a2", 2)));
        w.settled(3);
        assert!(w.ready().is_none(), "a rejected tag alone needs no ack");
        w.committed(4, "a4");
        assert_eq!(w.ready().map(|r| (r.acker, r.commits)), Some(("a4", 1)));
        assert!(w.open.is_empty());
    }

    proptest! {
        /// Whatever order ingests end in, an ack never covers a tag still being
        /// ingested, and once all have ended every commit has been answered.
        #[test]
        fn acks_cover_only_settled_tags(order in Just((1..=40u64).collect::<Vec<_>>()).prop_shuffle(),
                                        rejected in prop::collection::vec(any::<bool>(), 40)) {
            let mut w = Window::default();
            (1..=40).for_each(|t| w.received(t));
            let mut ended = std::collections::BTreeSet::new();
            let mut answered = 0;
            let mut acked_up_to = 0;
            for tag in order {
                if rejected[tag as usize - 1] {
                    w.settled(tag);
                } else {
                    w.committed(tag, tag);
                }
                ended.insert(tag);
                if let Some(Ready { tag: upto, commits, .. }) = w.ready() {
                    prop_assert!((1..=upto).all(|t| ended.contains(&t)));
                    prop_assert!(upto > acked_up_to);
                    acked_up_to = upto;
                    answered += commits;
                }
            }
            prop_assert_eq!(answered as usize, rejected.iter().filter(|r| !**r).count());
        }
    }
}
