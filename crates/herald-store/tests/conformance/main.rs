//! One conformance suite of store behaviour, written once (`cases`) and run
//! against every backend: the SQLite file, and the real PostgreSQL named by
//! `HERALD_TEST_DATABASE_URL` (each test in a schema of its own, dropped after).

mod backends;
mod cases;
mod fixtures;

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = crate::backends::sqlite().await;
                    crate::cases::$case(backend.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(herald_pg), ignore = "set HERALD_TEST_DATABASE_URL to run the PostgreSQL conformance tests")]
                async fn $case() {
                    let backend = crate::backends::postgres().await;
                    crate::cases::$case(backend.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    concurrent_ingests_get_commit_order,
    a_failing_write_does_not_sink_its_batch,
    idempotency_keys_return_the_first_message,
    tenants_are_created_listed_and_deleted,
    endpoints_are_managed_and_deletion_cancels,
    messages_are_listed_with_filters_and_cursors,
    claims_belong_to_one_node,
    ordered_claims_wait_for_earlier_deliveries,
    orphans_of_dead_nodes_are_adopted,
    owned_deliveries_page_in_send_order,
    outcomes_move_deliveries_on,
    outcomes_after_a_lost_claim_are_stale,
    dead_letters_replay_with_a_fresh_budget,
    disable_endpoint_dead_letters_its_queue,
    attempts_are_listed_with_filters,
    stats_count_what_happened,
    purge_removes_old_finished_work_only,
    endpoint_health_and_throughput_come_from_the_tries,
);
