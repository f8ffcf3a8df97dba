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

/// A herald with its listener bound, ready to run.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    engine: Engine,
}

impl App {
    /// Opens the store (running migrations) and binds the listener. Without an admin
    /// token the listener is bound to loopback whatever the configuration says.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let store = herald_store::open(&config.database_url)
            .await
            .with_context(|| format!("cannot open the store at {}", config.database_url))?;
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
        let router = herald_api::router(AppState {
            engine: engine.clone(),
            admin_token: config.admin_token.as_ref().map(|t| t.expose().to_string()),
            max_body_bytes: config.max_body_bytes,
        });
        Ok(Self {
            listener,
            router,
            engine,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves the API and runs the delivery workers until `shutdown`, then stops
    /// taking requests and lets requests in flight finish within the grace period.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!(%addr, "herald listening");
        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let workers = self.engine.run_workers(shutdown.clone());
        let (served, worked) = tokio::join!(
            async {
                let result = server.await;
                shutdown.cancel();
                result
            },
            async {
                let result = workers.await;
                shutdown.cancel();
                result
            }
        );
        served.context("the HTTP server failed")?;
        worked.context("the delivery workers failed")?;
        tracing::info!("herald stopped");
        Ok(())
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
