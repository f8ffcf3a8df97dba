//! `herald`: parse the command line, load the configuration, start telemetry, and
//! hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::client::ApiClient;
use herald::{App, Config, Overrides};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "herald", version, about = "Self-hosted webhook delivery")]
struct Cli {
    /// TOML configuration file (also HERALD_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Default)]
struct ServeFlags {
    /// Address to listen on (HERALD_LISTEN).
    #[arg(long)]
    listen: Option<String>,
    /// sqlite://PATH (HERALD_DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
    /// Log level or filter (HERALD_LOG_LEVEL).
    #[arg(long)]
    log_level: Option<String>,
    /// json or pretty.
    #[arg(long)]
    log_format: Option<String>,
    /// Run the management API (with none of --api/--workers given, all run).
    #[arg(long)]
    api: bool,
    /// Run the delivery workers.
    #[arg(long)]
    workers: bool,
}

impl ServeFlags {
    fn components(&self) -> herald::Components {
        if !self.api && !self.workers {
            return herald::Components::default();
        }
        herald::Components {
            api: self.api,
            workers: self.workers,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run herald: API, delivery workers and everything configured.
    Serve(ServeFlags),
    /// Bring the database schema up to date and exit.
    Migrate {
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Print the effective configuration, secrets masked.
    Config,
    /// Send a test event to a tenant through a running herald.
    Send {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "herald.test")]
        event_type: String,
        /// JSON payload.
        #[arg(long, default_value = "{\"test\": true}")]
        payload: String,
        /// Base URL of the running herald (default: from `listen`).
        #[arg(long)]
        url: Option<String>,
    },
    /// List or replay dead letters through a running herald.
    #[command(subcommand)]
    DeadLetters(DeadLetters),
}

#[derive(Subcommand)]
enum DeadLetters {
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        endpoint_id: Option<String>,
        #[arg(long)]
        url: Option<String>,
    },
    /// Replay one dead letter (--id) or every one matching the filters.
    Replay {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        endpoint_id: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = match &cli.command {
        Command::Serve(f) => Overrides {
            listen: f.listen.clone(),
            database_url: f.database_url.clone(),
            log_level: f.log_level.clone(),
            log_format: f.log_format.clone(),
        },
        Command::Migrate { database_url } => Overrides {
            database_url: database_url.clone(),
            ..Default::default()
        },
        _ => Overrides::default(),
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };
    herald::telemetry::init(&config.log_level, &config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve(flags) => {
            let shutdown = CancellationToken::new();
            herald::cancel_on_signals(shutdown.clone());
            App::build(&config)
                .await?
                .with_components(flags.components())
                .run(shutdown)
                .await
        }
        Command::Migrate { .. } => {
            let store = herald_store::open(
                &config.database_url,
                config.database_pool_size,
                config.master_key()?,
            )
            .await?;
            store.migrate().await?;
            println!("migrated {}", herald::redact_url(&config.database_url));
            Ok(())
        }
        Command::Config => {
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        Command::Send {
            tenant,
            event_type,
            payload,
            url,
        } => {
            let payload: Value = serde_json::from_str(&payload)
                .map_err(|e| anyhow::anyhow!("--payload is not JSON: {e}"))?;
            print(
                &ApiClient::new(&config, url)?
                    .send(&tenant, &event_type, payload)
                    .await?,
            );
            Ok(())
        }
        Command::DeadLetters(DeadLetters::List {
            tenant,
            endpoint_id,
            url,
        }) => {
            print(
                &ApiClient::new(&config, url)?
                    .dead_letters(&tenant, endpoint_id.as_deref())
                    .await?,
            );
            Ok(())
        }
        Command::DeadLetters(DeadLetters::Replay {
            tenant,
            id,
            endpoint_id,
            since,
            until,
            url,
        }) => {
            let client = ApiClient::new(&config, url)?;
            let answer = match id {
                Some(id) => client.replay_one(&tenant, &id).await?,
                None => {
                    client
                        .replay_bulk(
                            &tenant,
                            json!({"endpoint_id": endpoint_id, "since": since, "until": until}),
                        )
                        .await?
                }
            };
            print(&answer);
            Ok(())
        }
    }
}
