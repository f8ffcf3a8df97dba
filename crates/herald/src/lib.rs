//! The herald binary's library half: configuration, telemetry, and [`App`], which
//! wires store, engine and API together. `main` parses the command line and calls
//! in here; tests build an [`App`] on port 0 the same way.
//!
//! # Layout
//! - `config`: the one typed configuration and its layers.
//! - `telemetry`: JSON (or pretty) logs.
//! - `client`: the subcommands that talk to a running herald over its API.

pub mod client;
pub mod config;
pub mod telemetry;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use herald_api::AppState;
use herald_engine::Engine;
use herald_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, Overrides};

/// Which parts of herald a process runs (`herald serve --api --workers
/// --consumer --metrics`); all by default, so that one process is a whole herald.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Components {
    /// The management API (health is always served).
    pub api: bool,
    /// The delivery workers.
    pub workers: bool,
    /// The AMQP consumer (when `amqp_url` is set).
    pub consumer: bool,
    /// `/metrics`.
    pub metrics: bool,
}

impl Default for Components {
    fn default() -> Self {
        Self {
            api: true,
            workers: true,
            consumer: true,
            metrics: true,
        }
    }
}

/// A herald with its listener bound, ready to run.
pub struct App {
    listener: TcpListener,
    header_timeout: std::time::Duration,
    amqp: Option<herald_amqp::AmqpConfig>,
    state: Option<AppState>,
    engine: Engine,
    components: Components,
}

impl App {
    /// Opens the store (running migrations) and binds the listener. Without an admin
    /// token the listener is bound to loopback whatever the configuration says.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let store = herald_store::open(
            &config.database_url,
            config.database_pool_size,
            config.master_key()?,
        )
        .await
        .with_context(|| {
            format!(
                "cannot open the store at {}",
                redact_url(&config.database_url)
            )
        })?;
        Self::with_store(config, store).await
    }

    pub async fn with_store(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let mut addr = config.listen_addr()?;
        if config.admin_token.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(requested = %addr, "no admin token is configured: binding 127.0.0.1 only");
            addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port());
        } else if config.admin_token.is_none() {
            tracing::warn!("no admin token is configured: the API is open to local clients");
        }
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let engine = Engine::new(store, config.engine()?);
        let state = AppState {
            engine: engine.clone(),
            admin_token: config.admin_token.as_ref().map(|t| t.expose().to_string()),
            max_body_bytes: config.max_body_bytes,
            broker: None,
        };
        let amqp = config.amqp_url.as_ref().map(|url| herald_amqp::AmqpConfig {
            url: url.expose().to_string(),
            queue: config.amqp_queue.clone(),
            prefetch: config.amqp_prefetch,
            dead_letter_exchange: config.amqp_dead_letter_exchange.clone(),
        });
        Ok(Self {
            listener,
            header_timeout: std::time::Duration::from_secs_f64(
                config.client_header_timeout_seconds,
            ),
            amqp,
            state: Some(state),
            engine,
            components: Components::default(),
        })
    }

    /// Runs only these parts.
    pub fn with_components(mut self, components: Components) -> Self {
        self.components = components;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves the API and runs the delivery workers (the parts chosen) until
    /// `shutdown`, then stops taking requests and lets requests in flight finish
    /// within the grace period.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let Components {
            api,
            workers,
            consumer,
            metrics,
        } = self.components;
        let mut state = self.state.take().expect("an app runs once");
        let amqp = self.amqp.take().filter(|_| consumer);
        let link: Option<herald_amqp::BrokerLink> = amqp.as_ref().map(|_| Default::default());
        state.broker = link.clone();
        tracing::info!(%addr, api, workers, consumer = amqp.is_some(), metrics, "herald listening");
        let surfaces = herald_api::Surfaces {
            management: api,
            metrics,
        };
        let server = serve(
            self.listener,
            herald_api::router(state, surfaces),
            shutdown.clone(),
            self.header_timeout,
        );
        let engine = self.engine.clone();
        if workers {
            // Before the first ingest: what this process commits is then its own.
            engine
                .register_workers()
                .await
                .context("cannot register the delivery workers")?;
        }
        // The consumer stops first on shutdown: what it took is committed and acked.
        let consuming = match (amqp, link) {
            (Some(config), Some(link)) => Some(tokio::spawn(herald_amqp::run(
                engine.clone(),
                config,
                link,
                shutdown.clone(),
            ))),
            _ => None,
        };
        let delivering = async {
            if workers {
                engine.run_workers(shutdown.clone()).await
            } else {
                shutdown.cancelled().await;
                Ok(())
            }
        };
        let (served, worked, ()) = tokio::join!(
            async {
                let result = server.await;
                shutdown.cancel();
                result
            },
            async {
                let result = delivering.await;
                shutdown.cancel();
                result
            },
            engine.follow_config(shutdown.clone())
        );
        if let Some(consuming) = consuming {
            consuming.await.context("the AMQP consumer failed")?;
        }
        served.context("the HTTP server failed")?;
        worked.context("the delivery workers failed")?;
        tracing::info!("herald stopped");
        Ok(())
    }
}

/// Serves HTTP/1 and HTTP/2 until `shutdown`, then lets open connections finish
/// their requests (up to a bound). A client that takes longer than
/// `header_timeout` to send its request headers is cut off (slowloris).
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    header_timeout: std::time::Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(herald_api::REQUEST_TIMEOUT) => tracing::warn!("connections still open at shutdown were closed"),
    }
    Ok(())
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:********{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        token.cancel();
    });
}
