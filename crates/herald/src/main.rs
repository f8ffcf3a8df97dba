//! `herald`: parse the command line, load the configuration, start telemetry, and
//! hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use herald::client::ApiClient;
use herald::{App, Config, Overrides};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The hot path allocates per request and per delivery; glibc's allocator spent a
/// fifth of herald's CPU under load (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the management API (with none of --api/--workers/--consumer/--metrics
    /// given, all run).
    #[arg(long)]
    api: bool,
    /// Run the delivery workers.
    #[arg(long)]
    workers: bool,
    /// Run the AMQP consumer (seed 000's `--consumer`; needs HERALD_AMQP_URL).
    #[arg(long)]
    consumer: bool,
    /// Serve /metrics (seed 000's `--metrics`).
    #[arg(long)]
    metrics: bool,
}

impl ServeFlags {
    /// The parts named by flags; with none named, all of them.
    fn components(&self) -> herald::Components {
        if !(self.api || self.workers || self.consumer || self.metrics) {
            return herald::Components::default();
        }
        herald::Components {
            api: self.api,
            workers: self.workers,
            consumer: self.consumer,
            metrics: self.metrics,
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
    /// Check a received request's signature (for receivers). Exits 0 when it is
    /// valid, 1 with the reason when it is not.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// hmac-sha256-hex, hmac-sha256-prefixed, standard-webhooks,
    /// standard-webhooks-ed25519 or rsa-sha256.
    #[arg(long)]
    scheme: String,
    /// The shared secret, or the public key (`whpk_...` or PEM) of asymmetric schemes.
    #[arg(long, conflicts_with = "key_file")]
    key: Option<String>,
    /// A file holding the secret or public key.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// A received header, `Name: value`; repeat for each.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The received body; standard input when absent.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// The signature header, when the endpoint renamed it.
    #[arg(long)]
    signature_header: Option<String>,
    /// The timestamp header, when the endpoint renamed it.
    #[arg(long)]
    timestamp_header: Option<String>,
    /// How far the timestamp may be from now.
    #[arg(long, default_value_t = 300)]
    tolerance_seconds: i64,
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
    if let Command::Verify(args) = &cli.command {
        return verify(args);
    }
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

/// `herald verify`: needs no configuration, so it runs before any is loaded.
fn verify(args: &VerifyArgs) -> ExitCode {
    match check(args) {
        Ok(()) => {
            println!("valid");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            println!("invalid: {reason}");
            ExitCode::from(1)
        }
    }
}

fn check(args: &VerifyArgs) -> Result<(), String> {
    use std::io::Read;
    let scheme: herald_core::signing::SignatureScheme =
        serde_json::from_value(Value::String(args.scheme.clone()))
            .map_err(|_| format!("unknown scheme `{}`", args.scheme))?;
    let key = match (&args.key, &args.key_file) {
        (Some(k), _) => k.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        (None, None) => return Err("give the secret or public key with --key or --key-file".into()),
    };
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("header `{h}` is not `Name: value`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut body = Vec::new();
    match &args.body_file {
        Some(path) => {
            body =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut body)
                .map_err(|e| format!("cannot read the body: {e}"))?;
        }
    }
    herald_core::signing::verify(&herald_core::signing::VerifyInput {
        scheme,
        key: key.trim(),
        headers: &headers,
        body: &body,
        header: args.signature_header.as_deref(),
        timestamp_header: args.timestamp_header.as_deref(),
        now: chrono::Utc::now().timestamp(),
        tolerance_seconds: args.tolerance_seconds,
    })
    .map_err(|e| e.to_string())
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
        Command::Verify(_) => unreachable!("verify runs before the configuration is loaded"),
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
