//! herald's integration tests on PostgreSQL (the database `HERALD_TEST_DATABASE_URL`
//! names, each test in a schema of its own): the SQLite suite's tests again, and
//! several herald processes sharing one database.

/// The store these tests run on.
const BACKEND: helpers::Backend = helpers::Backend::Postgres;

macro_rules! herald_test {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(not(herald_pg), ignore = "set HERALD_TEST_DATABASE_URL to run the PostgreSQL tests")]
        async fn $name() $body
    };
}

#[path = "../it/api.rs"]
mod api;
#[path = "../it/cli.rs"]
mod cli;
mod cluster;
#[path = "../it/dead_letters.rs"]
mod dead_letters;
#[path = "../it/delivery.rs"]
mod delivery;
#[path = "../it/fan_out.rs"]
mod fan_out;
#[path = "../it/helpers.rs"]
mod helpers;
#[path = "../it/observability.rs"]
mod observability;
#[path = "../it/pacing.rs"]
mod pacing;
#[path = "../it/secrets.rs"]
mod secrets;
#[path = "../it/security.rs"]
mod security;
#[path = "../it/seed003.rs"]
mod seed003;
#[path = "../it/signing.rs"]
mod signing;
#[path = "../it/tokens.rs"]
mod tokens;
