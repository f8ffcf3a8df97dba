//! herald's integration tests on the embedded SQLite store: a real herald (in
//! process, or the binary for crash tests) with its own database file, delivering
//! to real receivers on 127.0.0.1. `tests/pg` runs the same tests on PostgreSQL.

/// The store these tests run on.
const BACKEND: helpers::Backend = helpers::Backend::Sqlite;

macro_rules! herald_test {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[tokio::test]
        async fn $name() $body
    };
}

macro_rules! amqp_test {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(not(herald_amqp), ignore = "set HERALD_TEST_AMQP_URL to run the RabbitMQ tests")]
        async fn $name() $body
    };
}

mod amqp;
mod api;
mod cli;
mod config;
mod crash;
mod dead_letters;
mod delivery;
mod fan_out;
mod helpers;
mod observability;
mod pacing;
mod secrets;
mod security;
mod seed003;
mod signing;
mod tokens;
