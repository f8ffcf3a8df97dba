//! The statements behind each kind of queued operation: every batch of ingests,
//! claims or outcomes is written with multi-row statements (data-modifying CTEs
//! over `UNNEST`), so one round trip serves the whole batch.

use super::*;

const INSERT_DELIVERIES: &str = "INSERT INTO deliveries (id, message_id, tenant_id, endpoint_id, target, status, \
     attempts, attempt_base, next_attempt_at, lease_owner, created_at, lease_until, target_url, target_origin, \
     updated_at) \
     SELECT v.*, v.created_at FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::int4[], $8::int4[], $9::int8[], $10::text[], $11::int8[], $12::int8[], $13::text[], $14::text[]) \
     AS v(id, message_id, tenant_id, endpoint_id, target, status, attempts, attempt_base, next_attempt_at, lease_owner, \
     created_at, lease_until, target_url, target_origin) \
     RETURNING id, seq";

/// Inserts the batch's messages as a CTE with parameters `$first` to `$first + 7`
/// (in front of the deliveries' insert: from $15, after its fourteen).
fn messages_cte(first: usize) -> String {
    let types = [
        "text", "text", "text", "text", "text", "text", "text", "int8",
    ];
    let params: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", first + i))
        .collect();
    format!(
        "WITH m AS (INSERT INTO messages (id, tenant_id, event_type, payload, headers, context, idempotency_key, \
         created_at) SELECT * FROM UNNEST({})) ",
        params.join(", ")
    )
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds the eight message columns, in `messages_cte`'s order.
fn bind_messages<'q>(query: PgQuery<'q>, msgs: &[&StoredMessage]) -> PgQuery<'q> {
    let text = |f: &dyn Fn(&StoredMessage) -> Option<String>| {
        msgs.iter().map(|m| f(m)).collect::<Vec<_>>()
    };
    query
        .bind(text(&|m| Some(m.id.to_string())))
        .bind(text(&|m| Some(m.tenant_id.to_string())))
        .bind(text(&|m| Some(m.event_type.clone())))
        .bind(text(&|m| Some(m.payload.clone())))
        .bind(text(&|m| {
            (!m.headers.is_empty())
                .then(|| serde_json::to_string(&m.headers).expect("headers serialize"))
        }))
        .bind(text(&|m| m.context.as_ref().map(|c| c.to_string())))
        .bind(text(&|m| m.idempotency_key.clone()))
        .bind(msgs.iter().map(|m| m.created_at).collect::<Vec<_>>())
}

/// Inserts deliveries with one statement and sets their `seq`. The caller holds the
/// ingest lock, so `seq` follows commit order.
pub(crate) async fn insert_deliveries(
    conn: &mut PgConnection,
    key: &MasterKey,
    deliveries: Vec<&mut Delivery>,
    owner: Option<&str>,
) -> StoreResult<()> {
    let owners = vec![owner.map(String::from); deliveries.len()];
    insert_owned(conn, key, deliveries, owners, None).await
}

/// Inserts deliveries (and, in the same statement, the messages they belong to)
/// and sets their `seq`.
async fn insert_owned(
    conn: &mut PgConnection,
    key: &MasterKey,
    mut deliveries: Vec<&mut Delivery>,
    owners: Vec<Option<String>>,
    messages_too: Option<&[&StoredMessage]>,
) -> StoreResult<()> {
    if deliveries.is_empty() {
        // A message no endpoint subscribes to is kept all the same.
        if let Some(msgs) = messages_too.filter(|m| !m.is_empty()) {
            let sql = format!("{}SELECT 1", messages_cte(1));
            bind_messages(sqlx::query(&sql), msgs)
                .execute(&mut *conn)
                .await
                .map_err(pg)?;
        }
        return Ok(());
    }
    let col = |f: &dyn Fn(&Delivery) -> String| deliveries.iter().map(|d| f(d)).collect::<Vec<_>>();
    let ids = col(&|d| d.id.to_string());
    let messages = col(&|d| d.message_id.to_string());
    let tenants = col(&|d| d.tenant_id.to_string());
    let endpoints: Vec<Option<String>> = deliveries
        .iter()
        .map(|d| d.endpoint_id.as_ref().map(|e| e.to_string()))
        .collect();
    let targets: Vec<Option<String>> = deliveries
        .iter()
        .map(|d| d.target.as_ref().map(|t| key.seal_json(t)))
        .collect();
    let statuses = col(&|d| d.status.as_str().to_string());
    let attempts: Vec<i32> = deliveries.iter().map(|d| d.attempts as i32).collect();
    let bases: Vec<i32> = deliveries.iter().map(|d| d.attempt_base as i32).collect();
    let due: Vec<Option<i64>> = deliveries.iter().map(|d| d.next_attempt_at).collect();
    let created: Vec<i64> = deliveries.iter().map(|d| d.created_at).collect();
    let with_messages = if messages_too.is_some() {
        messages_cte(15)
    } else {
        String::new()
    };
    let sql = format!("{with_messages}{INSERT_DELIVERIES}");
    let mut query = sqlx::query(&sql)
        .bind(&ids)
        .bind(&messages)
        .bind(&tenants)
        .bind(&endpoints)
        .bind(&targets)
        .bind(&statuses)
        .bind(&attempts)
        .bind(&bases)
        .bind(&due)
        .bind(&owners)
        .bind(&created)
        .bind(
            deliveries
                .iter()
                .map(|d| d.claimed_until)
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries
                .iter()
                .map(|d| d.target.as_ref().map(|t| t.url.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries
                .iter()
                .map(|d| {
                    d.target
                        .as_ref()
                        .map(|t| herald_core::network::origin(&t.url))
                })
                .collect::<Vec<_>>(),
        );
    if let Some(msgs) = messages_too {
        query = bind_messages(query, msgs);
    }
    let rows = query.fetch_all(&mut *conn).await.map_err(pg)?;
    let seqs: HashMap<String, i64> = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(0).map_err(pg)?,
                r.try_get::<i64, _>(1).map_err(pg)?,
            ))
        })
        .collect::<StoreResult<_>>()?;
    for d in deliveries.iter_mut() {
        d.seq = seqs.get(d.id.as_str()).copied().unwrap_or_default();
    }
    Ok(())
}

pub(super) async fn ingests(
    conn: &mut PgConnection,
    channel: &str,
    key: &MasterKey,
    ops: &[Op],
    results: &mut [Option<Done>],
) -> StoreResult<()> {
    let mut wanted: Vec<(usize, &Ingest, &Option<String>)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Ingest { ingest, owner } => Some((i, ingest, owner)),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    // Idempotency keys: seen before, or twice in this batch.
    let keyed: Vec<(String, String)> = wanted
        .iter()
        .filter_map(|(_, i, _)| {
            i.message
                .idempotency_key
                .as_ref()
                .map(|k| (i.message.tenant_id.to_string(), k.clone()))
        })
        .collect();
    let mut known: HashMap<(String, String), String> = HashMap::new();
    if !keyed.is_empty() {
        let (tenants, keys): (Vec<String>, Vec<String>) = keyed.into_iter().unzip();
        let rows = sqlx::query(
            "SELECT tenant_id, idempotency_key, id FROM messages \
             WHERE (tenant_id, idempotency_key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
        )
        .bind(&tenants)
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await
        .map_err(pg)?;
        for r in rows {
            known.insert(
                (r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?),
                r.try_get(2).map_err(pg)?,
            );
        }
    }
    wanted.retain(|(i, ingest, _)| {
        let Some(key) = &ingest.message.idempotency_key else {
            return true;
        };
        let slot = (ingest.message.tenant_id.to_string(), key.clone());
        match known.get(&slot) {
            Some(first) => {
                results[*i] = Some(Done::Ingest(IngestResult::Duplicate(
                    herald_core::MessageId::from_stored(first.clone()),
                )));
                false
            }
            None => {
                known.insert(slot, ingest.message.id.to_string());
                true
            }
        }
    });
    if wanted.is_empty() {
        return Ok(());
    }
    if wanted.iter().any(|(_, ingest, _)| ingest.ordered) {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(INGEST_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(pg)?;
    }
    let msgs: Vec<&StoredMessage> = wanted.iter().map(|(_, i, _)| &i.message).collect();
    let mut deliveries: Vec<(usize, Vec<Delivery>)> = wanted
        .iter()
        .map(|(i, ingest, _)| (*i, ingest.deliveries.clone()))
        .collect();
    let owners: Vec<Option<String>> = wanted
        .iter()
        .flat_map(|(_, ingest, owner)| {
            std::iter::repeat_n((*owner).clone(), ingest.deliveries.len())
        })
        .collect();
    let unowned = owners.iter().any(Option::is_none);
    insert_owned(
        conn,
        key,
        deliveries
            .iter_mut()
            .flat_map(|(_, d)| d.iter_mut())
            .collect(),
        owners,
        Some(&msgs),
    )
    .await?;
    if unowned {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(channel)
            .execute(&mut *conn)
            .await
            .map_err(pg)?;
    }
    for (i, d) in deliveries {
        results[i] = Some(Done::Ingest(IngestResult::Created(d)));
    }
    Ok(())
}

pub(super) async fn claims(
    conn: &mut PgConnection,
    ops: &[Op],
    results: &mut [Option<Done>],
) -> StoreResult<()> {
    let wanted: Vec<(usize, &String, &String, Millis, &Option<String>)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Claim {
                id,
                node,
                until,
                ordered,
            } => Some((i, id, node, *until, ordered)),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = wanted.iter().map(|w| w.1.as_str()).collect();
    let nodes: Vec<&str> = wanted.iter().map(|w| w.2.as_str()).collect();
    let untils: Vec<i64> = wanted.iter().map(|w| w.3).collect();
    let ordered: Vec<Option<&str>> = wanted.iter().map(|w| w.4.as_deref()).collect();
    // The head of an ordered endpoint is its open delivery of lowest `seq`; only the
    // head may be claimed, whichever process holds the others.
    let rows = sqlx::query(&format!(
        "UPDATE deliveries d SET status = 'delivering', lease_until = v.until \
         FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[]) AS v(id, node, until, ordered) \
         WHERE d.id = v.id AND d.lease_owner = v.node AND d.status IN {OPEN} \
         AND (v.ordered IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries e \
              WHERE e.endpoint_id = v.ordered AND e.status IN {OPEN} AND e.seq < d.seq)) \
         RETURNING d.id, d.attempts, d.attempt_base"
    ))
    .bind(&ids)
    .bind(&nodes)
    .bind(&untils)
    .bind(&ordered)
    .fetch_all(&mut *conn)
    .await
    .map_err(pg)?;
    let mut claimed: HashMap<String, Tries> = HashMap::new();
    for r in &rows {
        let tries = Tries {
            attempts: r.try_get::<i32, _>(1).map_err(pg)? as u32,
            attempt_base: r.try_get::<i32, _>(2).map_err(pg)? as u32,
        };
        claimed.insert(r.try_get(0).map_err(pg)?, tries);
    }
    let refused_ordered: Vec<&str> = wanted
        .iter()
        .filter(|w| w.4.is_some() && !claimed.contains_key(w.1.as_str()))
        .map(|w| w.1.as_str())
        .collect();
    let mut blocked: Vec<String> = Vec::new();
    if !refused_ordered.is_empty() {
        let owned: Vec<&str> = wanted
            .iter()
            .filter(|w| refused_ordered.contains(&w.1.as_str()))
            .map(|w| w.2.as_str())
            .collect();
        blocked = sqlx::query_scalar(&format!(
            "SELECT d.id FROM deliveries d JOIN UNNEST($1::text[], $2::text[]) AS v(id, node) \
             ON d.id = v.id AND d.lease_owner = v.node WHERE d.status IN {OPEN}"
        ))
        .bind(&refused_ordered)
        .bind(&owned)
        .fetch_all(&mut *conn)
        .await
        .map_err(pg)?;
    }
    for (i, id, ..) in wanted {
        results[i] = Some(Done::Claim(match claimed.remove(id.as_str()) {
            Some(tries) => Claim::Claimed(tries),
            None if blocked.contains(id) => Claim::Blocked,
            None => Claim::Lost,
        }));
    }
    Ok(())
}

pub(super) async fn outcomes(
    conn: &mut PgConnection,
    key: &MasterKey,
    ops: &[Op],
    results: &mut [Option<Done>],
) -> StoreResult<()> {
    let wanted: Vec<(usize, &Outcome, &String)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Outcome { outcome, node } => Some((i, &**outcome, node)),
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let attempts: Vec<&Attempt> = wanted.iter().map(|w| &w.1.attempt).collect();
    let text =
        |f: &dyn Fn(&Attempt) -> Option<String>| attempts.iter().map(|a| f(a)).collect::<Vec<_>>();
    let json = |v: &Vec<(String, String)>| serde_json::to_string(v).expect("headers serialize");

    let mut ids = Vec::new();
    let mut nodes = Vec::new();
    let mut statuses = Vec::new();
    let mut counts = Vec::new();
    let mut due: Vec<Option<i64>> = Vec::new();
    let mut errors: Vec<Option<String>> = Vec::new();
    let mut reasons: Vec<Option<String>> = Vec::new();
    let mut dead_at: Vec<Option<i64>> = Vec::new();
    let mut nows = Vec::new();
    for (_, o, node) in &wanted {
        let (status, at, error, reason, dead) = match &o.next {
            NextState::Succeeded => ("succeeded", None, None, None, None),
            NextState::Retry { at, error } => {
                ("pending", Some(*at), Some(error.clone()), None, None)
            }
            NextState::Dead { reason } | NextState::DisableEndpoint { reason, .. } => (
                "dead",
                None,
                Some(reason.clone()),
                Some(reason.clone()),
                Some(o.now),
            ),
        };
        ids.push(o.attempt.delivery_id.to_string());
        nodes.push(node.to_string());
        statuses.push(status);
        counts.push(o.attempt.attempt as i32);
        due.push(at);
        errors.push(error);
        reasons.push(reason);
        dead_at.push(dead);
        nows.push(o.now);
    }
    let applied: Vec<String> = sqlx::query_scalar(
        "WITH a AS (INSERT INTO attempts (id, delivery_id, message_id, tenant_id, endpoint_id, attempt, method, url, \
         request_headers, response_status, response_headers, response_body, duration_ms, outcome, error_kind, error, created_at, \
         request_body, body_from_payload) \
         SELECT * FROM UNNEST($10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::int4[], $16::text[], \
         $17::text[], $18::text[], $19::int4[], $20::text[], $21::text[], $22::int8[], $23::text[], $24::text[], $25::text[], \
         $26::int8[], $27::text[], $28::bool[])) \
         UPDATE deliveries d SET status = v.status, attempts = v.attempts, next_attempt_at = v.due, last_error = v.error, \
         dead_reason = v.reason, dead_at = v.dead_at, lease_until = NULL, updated_at = v.now \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::int8[], $6::text[], $7::text[], $8::int8[], $9::int8[]) \
         AS v(id, node, status, attempts, due, error, reason, dead_at, now) \
         WHERE d.id = v.id AND d.status = 'delivering' AND d.lease_owner = v.node RETURNING d.id",
    )
    .bind(&ids)
    .bind(&nodes)
    .bind(&statuses)
    .bind(&counts)
    .bind(&due)
    .bind(&errors)
    .bind(&reasons)
    .bind(&dead_at)
    .bind(&nows)
    .bind(text(&|a| Some(a.id.to_string())))
    .bind(text(&|a| Some(a.delivery_id.to_string())))
    .bind(text(&|a| Some(a.message_id.to_string())))
    .bind(text(&|a| Some(a.tenant_id.to_string())))
    .bind(text(&|a| a.endpoint_id.as_ref().map(|e| e.to_string())))
    .bind(attempts.iter().map(|a| a.attempt as i32).collect::<Vec<_>>())
    .bind(text(&|a| Some(a.method.clone())))
    .bind(text(&|a| Some(a.url.clone())))
    .bind(text(&|a| Some(json(&a.request_headers))))
    .bind(attempts.iter().map(|a| a.response_status.map(i32::from)).collect::<Vec<_>>())
    .bind(text(&|a| Some(json(&a.response_headers))))
    .bind(text(&|a| a.response_body.clone()))
    .bind(attempts.iter().map(|a| a.duration_ms as i64).collect::<Vec<_>>())
    .bind(text(&|a| Some(a.outcome.clone())))
    .bind(text(&|a| a.error_kind.clone()))
    .bind(text(&|a| a.error.clone()))
    .bind(attempts.iter().map(|a| a.created_at).collect::<Vec<_>>())
    .bind(text(&|a| {
        a.request_body
            .clone()
            .filter(|_| !a.request_body_is_payload)
    }))
    .bind(
        attempts
            .iter()
            .map(|a| a.request_body_is_payload)
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(pg)?;
    for (i, o, _) in wanted {
        let id = o.attempt.delivery_id.as_str();
        results[i] = Some(Done::Outcome(if !applied.iter().any(|a| a == id) {
            OutcomeApplied::Stale
        } else if let NextState::DisableEndpoint {
            endpoint_id,
            reason,
        } = &o.next
        {
            OutcomeApplied::Applied {
                also_dead: super::super::work::disable(
                    conn,
                    key,
                    endpoint_id.as_str(),
                    reason,
                    o.now,
                )
                .await?,
            }
        } else {
            OutcomeApplied::Applied {
                also_dead: Vec::new(),
            }
        }));
    }
    Ok(())
}
