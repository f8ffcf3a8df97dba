//! herald's integration tests: a real herald (in process, or the binary for crash
//! tests) with its own SQLite file, delivering to real receivers on 127.0.0.1.

mod api;
mod cli;
mod config;
mod crash;
mod delivery;
mod helpers;
mod pacing;
mod signing;
