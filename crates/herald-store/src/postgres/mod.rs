//! The PostgreSQL backend, for several herald processes on one database.
//!
//! Hot-path writes (ingests, claims, outcomes) go through [`writer`], which commits
//! what many callers queued meanwhile in one transaction with multi-row statements
//! (group commit). Everything else runs on the bounded pool directly. Work that no
//! process owns yet is announced with `NOTIFY`, and a listener wakes this process's
//! adoption loop, so another process picks it up at once rather than at its next poll.

mod messages;
mod resources;
mod rows;
mod schema;
mod stats;
pub mod test_schema;
mod tokens;
mod work;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_core::endpoint::Endpoint;
use herald_core::{DeliveryId, EndpointId, TenantId};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Row};
use tokio::sync::{broadcast, Notify};

use self::rows::DELIVERY_COLUMNS;
use self::writer::Writer;
use crate::crypto::MasterKey;
use crate::*;

const OPEN: &str = "('pending', 'delivering')";

pub struct PgStore {
    pool: PgPool,
    /// Seals endpoint configs and ad-hoc targets.
    key: MasterKey,
    writer: Writer,
    /// The NOTIFY channel of this database and schema for work nobody owns yet.
    channel: String,
    signal: Arc<Notify>,
    config: broadcast::Sender<ConfigChange>,
}

/// Maps a driver error: connection trouble is `Unavailable` (503, retried), a
/// unique violation is a `Conflict`, anything else a backend error.
pub(crate) fn pg(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code == "23505" {
                StoreError::Conflict(db.message().to_string())
            } else if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Postgres(e.to_string())
            }
        }
        _ => StoreError::Postgres(e.to_string()),
    }
}

impl PgStore {
    /// Connects (a pool of at most `pool_size`), migrates, and starts the writer and
    /// the NOTIFY listener. The schema is the connection's `search_path` (set it with
    /// `?options=-c%20search_path%3Dname` in the URL).
    pub async fn open(url: &str, pool_size: u32, key: MasterKey) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?
            // Statements may carry data; herald logs what it does itself.
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(2))
            .acquire_timeout(Duration::from_secs(5))
            // A dead connection fails its statement and is replaced; a ping before
            // every use would cost a round trip on the hot path.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(pg)?;
        schema::migrate(&pool).await?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await
            .map_err(pg)?;
        let (channel, config_channel) = schema::channels(&schema);
        let signal = Arc::new(Notify::new());
        let (config, _) = broadcast::channel(1024);
        tokio::spawn(listen(
            pool.clone(),
            [channel.clone(), config_channel],
            signal.clone(),
            config.clone(),
        ));
        // Writers per queue: one makes the biggest batches, which is what counts on a
        // small machine (measured: two per queue lose a third of the rate on two
        // cores); large pools get a second and third to overlap commits.
        let writers = (pool_size as usize / 16).clamp(1, 3);
        let writer = Writer::spawn(pool.clone(), channel.clone(), writers, key.clone());
        Ok(Self {
            pool,
            key,
            writer,
            channel,
            signal,
            config,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Forwards NOTIFYs on the work channel to `signal` and those on the config
/// channel to `config`, reconnecting with backoff.
async fn listen(
    pool: PgPool,
    [work, changes]: [String; 2],
    signal: Arc<Notify>,
    config: broadcast::Sender<ConfigChange>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener
                .listen_all([work.as_str(), changes.as_str()])
                .await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listener.await {
            Ok(mut listener) => {
                backoff = Duration::from_millis(100);
                // Whatever was announced while not listening is found by one look.
                signal.notify_one();
                let _ = config.send(ConfigChange::Any);
                // `recv` would reconnect unseen and lose what came meanwhile; a lost
                // connection ends this listener instead, and the next one says so.
                while let Ok(Some(notification)) = listener.try_recv().await {
                    if notification.channel() == changes {
                        let _ = config.send(config_change(notification.payload()));
                    } else {
                        signal.notify_one();
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "NOTIFY listener cannot connect"),
        }
        if pool.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Reads a config channel's payload (`{"tenant", "endpoint" | "token"?}`, see the
/// schema).
fn config_change(payload: &str) -> ConfigChange {
    #[derive(serde::Deserialize)]
    struct Changed {
        tenant: String,
        endpoint: Option<String>,
        token: Option<String>,
    }
    let Ok(changed) = serde_json::from_str::<Changed>(payload) else {
        return ConfigChange::Any;
    };
    let tenant_id = TenantId::from_stored(changed.tenant);
    match (changed.endpoint, changed.token) {
        (Some(id), _) => ConfigChange::Endpoint {
            tenant_id,
            id: EndpointId::from_stored(id),
        },
        (None, Some(id)) => ConfigChange::Token { tenant_id, id },
        (None, None) => ConfigChange::Tenant(tenant_id),
    }
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        schema::migrate(&self.pool).await
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(pg)?;
        Ok(())
    }

    fn config_changes(&self) -> Option<broadcast::Receiver<ConfigChange>> {
        Some(self.config.subscribe())
    }
}

async fn select_deliveries<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    key: &MasterKey,
    where_sql: &str,
    bind: &str,
) -> StoreResult<Vec<Delivery>> {
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries d WHERE {where_sql}"
    ))
    .bind(bind)
    .fetch_all(executor)
    .await
    .map_err(pg)?;
    rows.iter().map(|r| rows::delivery(r, key)).collect()
}

fn ids(rows: Vec<sqlx::postgres::PgRow>) -> StoreResult<Vec<DeliveryId>> {
    rows.iter()
        .map(|r| {
            r.try_get::<String, _>(0)
                .map(DeliveryId::from_stored)
                .map_err(pg)
        })
        .collect()
}

async fn load_endpoint<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    key: &MasterKey,
    id: &str,
    lock: bool,
) -> StoreResult<Option<Endpoint>> {
    let sql = format!(
        "SELECT config FROM endpoints WHERE id = $1 AND NOT deleted{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let config: Option<String> = sqlx::query_scalar(&sql)
        .bind(id)
        .fetch_optional(executor)
        .await
        .map_err(pg)?;
    config.map(|c| key.open_json(&c)).transpose()
}

async fn save_endpoint<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    key: &MasterKey,
    endpoint: &Endpoint,
) -> StoreResult<()> {
    let done =
        sqlx::query("UPDATE endpoints SET config = $2, url = $3 WHERE id = $1 AND NOT deleted")
            .bind(endpoint.id.as_str())
            .bind(key.seal_json(endpoint))
            .bind(&endpoint.url)
            .execute(executor)
            .await
            .map_err(pg)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
