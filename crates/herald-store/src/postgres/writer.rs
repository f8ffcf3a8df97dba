//! The PostgreSQL hot path: a few tasks drain what callers queued (ingests, claims,
//! outcomes), each committing what it took in one transaction with multi-row
//! `UNNEST` statements, so a round trip and a WAL flush are shared by the whole
//! batch; while one batch waits for its commit, the next is already being written. If the batch
//! fails for a reason other than the database being unreachable, each operation is
//! redone alone, so one bad write cannot sink its neighbours.

use std::collections::HashMap;

use sqlx::postgres::PgConnection;
use sqlx::postgres::PgPool;
use sqlx::{Acquire, Row};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::schema::INGEST_LOCK;
use super::{pg, OPEN};
use crate::crypto::MasterKey;
use crate::*;

mod statements;

pub(crate) use statements::insert_deliveries;
use statements::{claims, ingests, outcomes};

const MAX_BATCH: usize = 512;

enum Op {
    Ingest {
        ingest: Ingest,
        owner: Option<String>,
    },
    Claim {
        id: String,
        node: String,
        until: Millis,
        ordered: Option<String>,
    },
    Outcome {
        outcome: Box<Outcome>,
        node: String,
    },
}

enum Done {
    Ingest(IngestResult),
    Claim(Claim),
    Outcome(OutcomeApplied),
}

struct Queued {
    op: Op,
    reply: oneshot::Sender<StoreResult<Done>>,
}

/// Ingests and the engine's claims and outcomes queue apart, so that a batch is
/// usually of one kind: one statement, which commits by itself.
#[derive(Clone)]
pub(crate) struct Writer {
    ingests: mpsc::Sender<Queued>,
    work: mpsc::Sender<Queued>,
}

impl Writer {
    /// Starts `writers` tasks per queue.
    pub(crate) fn spawn(pool: PgPool, channel: String, writers: usize, key: MasterKey) -> Self {
        let spawn_queue = || {
            let (queue, jobs) = mpsc::channel(16_384);
            let jobs = Arc::new(Mutex::new(jobs));
            for _ in 0..writers.max(1) {
                tokio::spawn(run(
                    pool.clone(),
                    channel.clone(),
                    key.clone(),
                    jobs.clone(),
                ));
            }
            queue
        };
        Self {
            ingests: spawn_queue(),
            work: spawn_queue(),
        }
    }

    async fn submit(&self, op: Op) -> StoreResult<Done> {
        let (reply, answer) = oneshot::channel();
        let queue = match op {
            Op::Ingest { .. } => &self.ingests,
            _ => &self.work,
        };
        queue
            .send(Queued { op, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    pub(crate) async fn ingest(
        &self,
        ingest: Ingest,
        owner: Option<String>,
    ) -> StoreResult<IngestResult> {
        match self.submit(Op::Ingest { ingest, owner }).await? {
            Done::Ingest(r) => Ok(r),
            _ => unreachable!("an ingest answers an ingest"),
        }
    }

    pub(crate) async fn claim(
        &self,
        id: String,
        node: String,
        until: Millis,
        ordered: Option<String>,
    ) -> StoreResult<Claim> {
        match self
            .submit(Op::Claim {
                id,
                node,
                until,
                ordered,
            })
            .await?
        {
            Done::Claim(c) => Ok(c),
            _ => unreachable!("a claim answers a claim"),
        }
    }

    pub(crate) async fn outcome(
        &self,
        outcome: Outcome,
        node: String,
    ) -> StoreResult<OutcomeApplied> {
        match self
            .submit(Op::Outcome {
                outcome: Box::new(outcome),
                node,
            })
            .await?
        {
            Done::Outcome(o) => Ok(o),
            _ => unreachable!("an outcome answers an outcome"),
        }
    }
}

async fn run(
    pool: PgPool,
    channel: String,
    key: MasterKey,
    jobs: Arc<Mutex<mpsc::Receiver<Queued>>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        {
            let mut jobs = jobs.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.drain(..).map(|q| (q.op, q.reply)).unzip();
        match commit(&pool, &channel, &key, &ops).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(StoreError::Unavailable(why)) => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(why.clone())));
                }
            }
            Err(_) => {
                for (op, reply) in ops.into_iter().zip(replies) {
                    let one = commit(&pool, &channel, &key, std::slice::from_ref(&op)).await;
                    let one = match (one, &op) {
                        // Another process committed the same key meanwhile.
                        (Err(StoreError::Conflict(_)), Op::Ingest { ingest, .. })
                            if ingest.message.idempotency_key.is_some() =>
                        {
                            first_with_key(&pool, &ingest.message).await
                        }
                        (one, _) => one.map(|mut r| r.remove(0)),
                    };
                    let _ = reply.send(one);
                }
            }
        }
    }
}

async fn first_with_key(pool: &PgPool, message: &StoredMessage) -> StoreResult<Done> {
    let id: String =
        sqlx::query_scalar("SELECT id FROM messages WHERE tenant_id = $1 AND idempotency_key = $2")
            .bind(message.tenant_id.as_str())
            .bind(&message.idempotency_key)
            .fetch_one(pool)
            .await
            .map_err(pg)?;
    Ok(Done::Ingest(IngestResult::Duplicate(
        herald_core::MessageId::from_stored(id),
    )))
}

/// Whether the batch is one statement, which commits by itself: then it needs
/// neither `BEGIN` nor `COMMIT` (two round trips saved).
fn single_statement(ops: &[Op]) -> bool {
    let (mut ingests, mut claims, mut outcomes, mut extra) = (false, false, false, false);
    for op in ops {
        match op {
            Op::Ingest { ingest, owner } => {
                ingests = true;
                extra |=
                    ingest.ordered || ingest.message.idempotency_key.is_some() || owner.is_none();
            }
            Op::Claim { ordered, .. } => {
                claims = true;
                extra |= ordered.is_some();
            }
            Op::Outcome { outcome, .. } => {
                outcomes = true;
                extra |= matches!(outcome.next, NextState::DisableEndpoint { .. });
            }
        }
    }
    !extra && (ingests as u8 + claims as u8 + outcomes as u8) == 1
}

async fn run_all(
    conn: &mut PgConnection,
    channel: &str,
    key: &MasterKey,
    ops: &[Op],
    results: &mut [Option<Done>],
) -> StoreResult<()> {
    ingests(conn, channel, key, ops, results).await?;
    claims(conn, ops, results).await?;
    outcomes(conn, key, ops, results).await
}

/// Runs `ops` in one transaction (or one self-committing statement); answers in
/// the same order.
async fn commit(
    pool: &PgPool,
    channel: &str,
    key: &MasterKey,
    ops: &[Op],
) -> StoreResult<Vec<Done>> {
    let mut conn = pool.acquire().await.map_err(pg)?;
    let mut results: Vec<Option<Done>> = (0..ops.len()).map(|_| None).collect();
    if single_statement(ops) {
        run_all(&mut conn, channel, key, ops, &mut results).await?;
    } else {
        let mut tx = conn.begin().await.map_err(pg)?;
        run_all(&mut tx, channel, key, ops, &mut results).await?;
        tx.commit().await.map_err(pg)?;
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every operation is answered"))
        .collect())
}
