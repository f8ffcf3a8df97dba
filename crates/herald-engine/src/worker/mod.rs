//! One delivery attempt: build the request (body, headers, signature, auth), send it
//! with the shared client, classify the answer (pure, in `herald_core::outcome`),
//! and record the attempt and the delivery's next state in the store. The scheduler
//! hears back only after the record is committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use herald_core::endpoint::DeliveryMode;
use herald_core::endpoint::{Endpoint, OnExhausted};
use herald_core::outcome::{classify, next_step, NextStep, TransportError, TryResult, Verdict};
use herald_core::retry::RetryPolicy;
use herald_core::signing::SignInput;
use herald_core::AttemptId;
use herald_store::prelude::*;
use herald_store::{Attempt, Claim, NextState, NodeId, Outcome, OutcomeApplied};

use crate::breaker::Signal;
use crate::cache::Cache;
use crate::http::{Failure, HttpClients, Request};
use crate::scheduler::{now_ms, Finished, Job};
use crate::EngineConfig;

mod request;

use request::{body, plan, request_headers, Plan};

pub(crate) struct WorkerCtx {
    pub metrics: Arc<crate::metrics::Metrics>,
    pub node: NodeId,
    pub store: Arc<dyn Store>,
    pub cache: Arc<Cache>,
    pub http: HttpClients,
    pub config: Arc<EngineConfig>,
    /// Each endpoint's circuit breaker state, as the scheduler last saw it.
    pub circuits: Arc<crate::Circuits>,
}

const REDACTED: &str = "[redacted]";

/// How soon a delivery of an ordered endpoint asks again while an earlier one,
/// held by another node, is still open.
const ORDERED_RECHECK_MS: i64 = 100;

pub(crate) async fn attempt(
    ctx: Arc<WorkerCtx>,
    mut job: Job,
    endpoint: Option<Arc<Endpoint>>,
) -> Finished {
    let retry_soon = |job: Job, signal| Finished::later(job, now_ms() + 1000, signal);
    let message = match job.message.take() {
        Some(m) => m,
        None => match ctx.store.get_message(&job.tenant_id, &job.message_id).await {
            Ok(Some(m)) => Arc::new(m),
            Ok(None) => return Finished::done(job, Signal::Skipped),
            Err(e) => {
                tracing::warn!(delivery_id = %job.delivery_id, error = %e, "cannot read the message; retrying in 1 s");
                return retry_soon(job, Signal::Skipped);
            }
        },
    };
    let policy = match retry_policy(&ctx, &job, endpoint.as_deref()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(delivery_id = %job.delivery_id, error = %e, "cannot read the tenant; retrying in 1 s");
            return retry_soon(job, Signal::Skipped);
        }
    };
    let target = job.target.clone();
    let Some(plan) = plan(&ctx.config, target.as_deref(), endpoint.as_deref()) else {
        // The endpoint is gone: its deliveries were closed with it.
        return Finished::done(job, Signal::Skipped);
    };
    // The lease outlasts the whole request, so no other node takes it meanwhile.
    let lease_until = now_ms() + ctx.config.lease_ms(plan.timeout);
    let ordered = endpoint
        .as_deref()
        .filter(|e| e.mode == DeliveryMode::Ordered)
        .map(|e| &e.id);
    let claim = if std::mem::take(&mut job.claimed) {
        None
    } else {
        Some(
            ctx.store
                .claim(&job.delivery_id, &ctx.node, lease_until, ordered)
                .await,
        )
    };
    match claim {
        None => {}
        Some(Ok(Claim::Claimed(tries))) => {
            job.attempts = tries.attempts;
            job.attempt_base = tries.attempt_base;
        }
        Some(Ok(Claim::Blocked)) => {
            return Finished::later(job, now_ms() + ORDERED_RECHECK_MS, Signal::Skipped)
        }
        Some(Ok(Claim::Lost)) => return Finished::done(job, Signal::Skipped),
        Some(Err(e)) => {
            tracing::warn!(delivery_id = %job.delivery_id, error = %e, "cannot claim a delivery; retrying in 1 s");
            return retry_soon(job, Signal::Skipped);
        }
    }

    let now = Utc::now();
    let timestamp = now.timestamp();
    let attempt_no = job.attempts + 1;
    let mut headers = request_headers(&plan, &message, timestamp);
    let prepared = body(&plan, &message, timestamp).and_then(|body| {
        let signed = plan
            .signature
            .signer(now)
            .and_then(|signer| {
                signer.sign(&SignInput {
                    message_id: message.id.as_str(),
                    timestamp,
                    body: &body,
                })
            })
            .map_err(|e| {
                ctx.metrics.hmac_errors.inc();
                ("signing", format!("signing failed: {e}"))
            })?;
        Ok((body, signed))
    });
    let url = url::Url::parse(plan.url);
    let origin = url.as_ref().map_or_else(
        |_| "other".to_string(),
        |u| u.origin().ascii_serialization(),
    );
    let started = Instant::now();
    let (sent, sent_payload): (Option<String>, bool);
    let (result, answer_headers, answer_body, error_kind, error) = match prepared {
        Err((kind, reason)) => {
            let attempt = log_attempt(
                &job,
                &plan,
                &headers,
                attempt_no,
                None,
                &[],
                None,
                0,
                "failed",
                Some(kind),
                Some(reason.clone()),
            );
            return record(
                &ctx,
                job,
                attempt,
                NextState::Dead { reason },
                None,
                Signal::Skipped,
            )
            .await;
        }
        Ok((body, signature_headers)) => {
            let limit = ctx.config.response_body_limit;
            // The stored payload, whole, is kept once: with the message.
            sent_payload = plan.template.is_none() && body.len() <= limit;
            sent = (!sent_payload)
                .then(|| String::from_utf8_lossy(&body[..body.len().min(limit)]).into_owned());
            headers.extend(signature_headers);
            if let Some(auth) = &plan.auth {
                headers.push(auth.clone());
            }
            let answered = match url {
                Ok(url) => {
                    let request = Request {
                        method: plan.method,
                        url,
                        headers: &headers,
                        body,
                        connect_timeout: Duration::from_secs_f64(plan.connect_timeout),
                        timeout: Duration::from_secs_f64(plan.timeout),
                    };
                    ctx.http.send(request, ctx.config.response_body_limit).await
                }
                Err(e) => Err(Failure {
                    kind: TransportError::Request,
                    message: format!("bad URL: {e}"),
                }),
            };
            match answered {
                Ok(answer) => {
                    let retry_after = header(&answer.headers, "retry-after");
                    let error = (!(200..300).contains(&answer.status))
                        .then(|| format!("HTTP {}", answer.status));
                    let body = String::from_utf8_lossy(&answer.body).into_owned();
                    (
                        TryResult::Answered {
                            status: answer.status,
                            retry_after,
                        },
                        answer.headers,
                        Some(body),
                        error.as_ref().map(|_| "http_status"),
                        error,
                    )
                }
                Err(failure) => (
                    TryResult::Failed(failure.kind),
                    Vec::new(),
                    None,
                    Some(failure.kind.as_str()),
                    Some(format!("{}: {}", failure.kind.as_str(), failure.message)),
                ),
            }
        }
    };
    let elapsed = started.elapsed();
    let duration_ms = elapsed.as_millis() as u64;
    let answered_2xx =
        matches!(result, TryResult::Answered { status, .. } if (200..300).contains(&status));
    ctx.metrics
        .observe_try(&origin, answered_2xx, elapsed.as_secs_f64());
    let verdict = classify(&result, now);
    let step = next_step(
        &verdict,
        &policy,
        attempt_no.saturating_sub(job.attempt_base),
        ctx.config.max_retry_after_seconds,
        &mut rand::thread_rng(),
    );
    let error_text = error.clone().unwrap_or_default();
    let (next, outcome, again_at) = match step {
        NextStep::Succeeded => (NextState::Succeeded, "success", None),
        NextStep::RetryIn(seconds) => {
            let at = now_ms() + (seconds * 1000.0) as i64;
            (
                NextState::Retry {
                    at,
                    error: error_text,
                },
                "retry",
                Some(at),
            )
        }
        NextStep::Exhausted => {
            let reason = format!("retries exhausted after {attempt_no} attempts: {error_text}");
            match (&plan.on_exhausted, &job.endpoint_id) {
                (OnExhausted::DisableEndpoint, Some(endpoint_id)) => (
                    NextState::DisableEndpoint {
                        endpoint_id: endpoint_id.clone(),
                        reason,
                    },
                    "failed",
                    None,
                ),
                _ => (NextState::Dead { reason }, "failed", None),
            }
        }
        NextStep::FailedPermanently => (
            NextState::Dead {
                reason: format!("permanent failure: {error_text}"),
            },
            "failed",
            None,
        ),
    };
    let status = match &result {
        TryResult::Answered { status, .. } => Some(*status),
        TryResult::Failed(_) => None,
    };
    let signal = match verdict {
        Verdict::Success => Signal::Success,
        Verdict::Retry { .. } => Signal::Failure,
        Verdict::Permanent => Signal::Neutral,
    };
    tracing::info!(
        tenant_id = %job.tenant_id,
        endpoint_id = job.endpoint_id.as_ref().map(|e| e.as_str()),
        message_id = %job.message_id,
        delivery_id = %job.delivery_id,
        attempt = attempt_no,
        status,
        duration_ms,
        outcome,
        error = error.as_deref(),
        "delivery attempt"
    );
    let mut attempt = log_attempt(
        &job,
        &plan,
        &headers,
        attempt_no,
        status,
        &answer_headers,
        answer_body,
        duration_ms,
        outcome,
        error_kind,
        error,
    );
    attempt.request_body = sent;
    attempt.request_body_is_payload = sent_payload;
    record(&ctx, job, attempt, next, again_at, signal).await
}

/// Commits the attempt; on a store error the try is repeated later, uncounted.
async fn record(
    ctx: &WorkerCtx,
    mut job: Job,
    attempt: Attempt,
    next: NextState,
    again_at: Option<i64>,
    signal: Signal,
) -> Finished {
    let attempts = attempt.attempt;
    let disabled = match &next {
        NextState::DisableEndpoint { endpoint_id, .. } => Some(endpoint_id.clone()),
        _ => None,
    };
    let dies = matches!(
        next,
        NextState::Dead { .. } | NextState::DisableEndpoint { .. }
    );
    let tried = attempt.outcome.clone();
    let outcome = Outcome {
        attempt,
        next,
        now: now_ms(),
    };
    match ctx.store.record_outcome(outcome, &ctx.node).await {
        Ok(OutcomeApplied::Applied { also_dead }) => {
            ctx.metrics.attempt(&tried);
            if dies {
                ctx.metrics.dead_letters.inc_by(1 + also_dead.len() as u64);
            }
            job.attempts = attempts;
            let endpoint = match disabled {
                Some(id) => match ctx.cache.reload_endpoint(&id, &job.tenant_id).await {
                    Ok(endpoint) => endpoint,
                    Err(e) => {
                        tracing::warn!(endpoint_id = %id, error = %e, "cannot reload a disabled endpoint");
                        None
                    }
                },
                None => None,
            };
            Finished {
                job,
                again_at,
                also_closed: also_dead,
                signal,
                endpoint,
            }
        }
        Ok(OutcomeApplied::Stale) => {
            ctx.metrics.attempt(&tried);
            Finished::done(job, signal)
        }
        Err(e) => {
            tracing::error!(delivery_id = %job.delivery_id, error = %e, "cannot record an attempt; it will be repeated");
            Finished::later(job, now_ms() + 1000, signal)
        }
    }
}

async fn retry_policy(
    ctx: &WorkerCtx,
    job: &Job,
    endpoint: Option<&Endpoint>,
) -> Result<RetryPolicy, herald_store::StoreError> {
    if let Some(policy) = endpoint.and_then(|e| e.retry_policy.clone()) {
        return Ok(policy);
    }
    if let Some(policy) = job.target.as_ref().and_then(|t| t.retry_policy.clone()) {
        return Ok(policy);
    }
    let tenant = ctx.cache.tenant(&job.tenant_id).await?;
    Ok(tenant
        .and_then(|t| t.retry_policy)
        .unwrap_or_else(|| ctx.config.default_retry_policy.clone()))
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

#[allow(clippy::too_many_arguments)]
fn log_attempt(
    job: &Job,
    plan: &Plan<'_>,
    headers: &[(String, String)],
    attempt: u32,
    status: Option<u16>,
    response_headers: &[(String, String)],
    response_body: Option<String>,
    duration_ms: u64,
    outcome: &str,
    error_kind: Option<&str>,
    error: Option<String>,
) -> Attempt {
    let secret_header = plan.auth.as_ref().map(|(n, _)| n.as_str());
    let request_headers = headers
        .iter()
        .map(|(n, v)| {
            let secret = secret_header.is_some_and(|s| s.eq_ignore_ascii_case(n));
            (
                n.clone(),
                if secret {
                    REDACTED.to_string()
                } else {
                    v.clone()
                },
            )
        })
        .collect();
    Attempt {
        id: AttemptId::new(),
        delivery_id: job.delivery_id.clone(),
        message_id: job.message_id.clone(),
        tenant_id: job.tenant_id.clone(),
        endpoint_id: job.endpoint_id.clone(),
        attempt,
        method: plan.method.to_string(),
        url: plan.url.to_string(),
        request_headers,
        response_status: status,
        response_headers: response_headers.to_vec(),
        response_body,
        duration_ms,
        outcome: outcome.to_string(),
        error_kind: error_kind.map(str::to_string),
        error,
        created_at: now_ms(),
        request_body: None,
        request_body_is_payload: false,
    }
}
