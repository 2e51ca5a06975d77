//! The conformance suite every es-rs event store runs, and the fixture domain it uses.
//!
//! The suite has two parts, each case one `pub async fn` generic over the store:
//!
//! - the **store contract** ([`conformance`]): appends, reads, the global log, limits,
//!   subscriptions, snapshots, checkpoints, leases, archiving, history and upcasting. It
//!   checks the store, so it runs on every configuration of every store;
//! - the **engine cases** ([`engine`]): es-core's `Repository`, `ProjectionRunner`,
//!   process managers and `Decider` on top of the store. They check es-core, and need to
//!   run only once per kind of store.
//!
//! Macros turn a store factory into one `#[tokio::test]` per case, so a failing case shows
//! up by name. For a new store, run [`conformance_tests!`] (both parts) on its main
//! configuration, and [`store_contract!`] alone on each further configuration of the same
//! store that only changes what the store does (es-memory's strict mode); a configuration
//! that changes how every statement runs (es-postgres under SERIALIZABLE) runs both parts
//! again, since the engine's runners, leases and checkpoints issue statements of their own.
//! [`engine_cases!`] is the second half on its own:
//!
//! ```ignore
//! // es-memory/tests/conformance.rs
//! es_testkit::conformance_tests!(async { es_memory::MemoryEventStore::new() });
//! // es-memory/tests/conformance_strict.rs: the same store, reading through its encoding
//! es_testkit::store_contract!(async { es_memory::MemoryEventStore::strict() });
//! ```
//!
//! The factory expression is evaluated once per test and must give a fresh, empty store
//! (for PostgreSQL: a new schema, as `postgres::fresh_store` with the feature `postgres`
//! gives), so tests run in parallel
//! without sharing data.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test-support crate: a failed expectation is a test failure"
)]

pub mod conformance;
pub mod customers;
pub mod engine;
pub mod fixture;
pub mod flaky;
pub mod personal;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod projections;

#[doc(hidden)]
pub mod __private {
    pub use tokio;
}

/// Stamps one `#[tokio::test]` per case of the whole suite, the [store
/// contract](conformance) and the [engine cases](engine), each on a fresh store from
/// `$factory` (an expression giving a future of the store, such as an `async` block).
///
/// Use it once per kind of store, on its main configuration, and on every further
/// configuration that changes how the store's statements run (another isolation level);
/// configurations that change only what the store does (a stricter mode) run
/// [`store_contract!`] alone.
///
/// With `teardown = $teardown` (a function from the store to a future), each test that
/// passes hands its store to it afterwards, to drop its schema or database; a failing test
/// leaves its data for inspection.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!($factory, teardown = |_store| async {});
    };
    ($factory:expr, teardown = $teardown:expr) => {
        $crate::store_contract!($factory, teardown = $teardown);
        $crate::engine_cases!($factory, teardown = $teardown);
    };
}

/// Stamps one `#[tokio::test]` per case of the [store contract](conformance): what every
/// store, in every configuration, must do. Arguments as for [`conformance_tests!`].
#[macro_export]
macro_rules! store_contract {
    ($factory:expr) => {
        $crate::store_contract!($factory, teardown = |_store| async {});
    };
    ($factory:expr, teardown = $teardown:expr) => {
        $crate::__conformance_cases! { conformance; $factory; $teardown;
            append_to_new_stream,
            append_with_exact_version,
            append_with_any_version,
            no_stream_conflicts_on_existing_stream,
            stale_version_conflicts_and_writes_nothing,
            version_ahead_conflicts,
            empty_append_checks_version_and_writes_nothing,
            batch_is_atomic_and_consecutive,
            large_batch_in_one_append,
            reappending_stored_ids_is_idempotent,
            partly_stored_batch_is_rejected,
            id_stored_in_another_stream_is_rejected,
            id_twice_in_one_batch_is_rejected,
            id_of_another_type_elsewhere_is_rejected,
            unencodable_event_is_refused_and_writes_nothing,
            nul_characters_are_refused_alike,
            limits_are_refused_alike,
            batch_over_the_size_limit_is_refused,
            expected_version_beyond_the_last_conflicts,
            accepted_values_read_back_identically,
            read_stream_from_version,
            missing_stream_is_empty,
            metadata_and_ids_round_trip,
            traceparent_round_trips_on_every_read_path,
            stream_ids_with_special_characters,
            global_log_is_ordered_and_resumable,
            global_log_filters_by_category_and_type,
            reading_as_another_type_decodes_the_payload,
            undecodable_event_names_stream_version_and_type,
            find_event_by_id,
            concurrent_writers_on_one_stream_lose_nothing,
            concurrent_writers_on_distinct_streams_never_conflict,
            any_version_appends_never_conflict,
            subscriber_sees_history_then_live_events,
            subscriber_sees_every_event_once_while_writers_run,
            subscriber_resumes_after_position,
            subscriber_filters,
            snapshots_keep_the_newest,
            load_events_start_with_the_snapshot_then_the_events_after,
            checkpoints_save_load_and_delete,
            undecodable_event_is_parked_and_the_runner_goes_on,
            undecodable_event_stops_the_runner_under_the_stop_policy,
            lease_renewal_proves_nobody_took_it,
            parked_events_and_leases_are_stored,
            lease_with_an_unbounded_ttl_is_held,
            archived_stream_refuses_appends_and_keeps_its_history,
            archived_stream_leaves_the_log_and_subscriptions,
            repository_refuses_archived_aggregates,
            an_archive_after_the_read_leaves_the_decision,
            archive_while_writers_append_refuses_every_later_append,
            process_manager_commands_on_archived_aggregates,
            load_as_of_version_and_time,
            load_as_of_uses_only_snapshots_from_before,
            load_as_of_ignores_undecodable_events_after_the_target,
            unusable_snapshots_are_ignored,
            history_lists_events_with_their_metadata,
            old_event_versions_upcast_on_every_read_path,
            stored_version_without_a_path_is_a_typed_error,
            tags_merge_and_read_back_alike_on_every_read_path,
            tags_invalid_are_refused_and_nothing_stored,
            tags_beyond_the_limit_are_refused_and_nothing_stored,
            query_items_select_by_any_type_and_all_tags,
            query_reads_after_a_position_in_log_order,
            query_reads_archived_streams,
            append_if_succeeds_when_nothing_matching_came_after,
            append_if_fails_naming_the_first_matching_event,
            append_if_without_a_position_counts_every_matching_event,
            append_if_ignores_events_that_do_not_match,
            append_if_still_checks_the_expected_version,
            append_if_reports_archive_then_version_then_condition,
            append_if_repeat_is_a_duplicate,
            append_if_empty_batch_checks_the_condition,
            append_if_failure_shows_no_tag_value,
            dcb_course_subscriptions,
            dcb_unique_username,
            dcb_invoice_numbers_without_gaps,
            dcb_opt_in_token,
            dcb_writers_race_for_the_last_seats,
        }
    };
}

/// Stamps one `#[tokio::test]` per [engine case](engine): es-core's repository, projection
/// runner, process managers and decider on top of the store. Arguments as for
/// [`conformance_tests!`], which includes these; use this macro alone only where the
/// contract runs elsewhere.
#[macro_export]
macro_rules! engine_cases {
    ($factory:expr) => {
        $crate::engine_cases!($factory, teardown = |_store| async {});
    };
    ($factory:expr, teardown = $teardown:expr) => {
        $crate::__conformance_cases! { engine; $factory; $teardown;
            repository_commands_under_contention_lose_nothing,
            repository_command_id_is_idempotent,
            repository_rides_out_store_failures,
            repository_context_without_command_id_can_be_reused,
            repository_snapshot_state_equals_replayed_state,
            repository_cache_never_decides_on_stale_state,
            repository_command_costs_one_load_and_one_append,
            projection_catches_up_and_resumes_from_its_checkpoint,
            killed_projection_resumes_exactly_once,
            killed_projection_without_own_checkpoint_loses_nothing,
            rebuild_gives_the_view_live_processing_gave,
            two_instances_handle_each_event_once,
            failing_event_is_parked_and_can_be_retried,
            stop_policy_stops_at_the_failing_event,
            status_reports_position_lag_and_errors,
            partitioned_runners_split_streams_and_keep_order,
            partitions_of_one_read_model_resume_and_rebuild_together,
            resumed_runner_reports_its_checkpoint,
            stop_policy_keeps_the_events_before_the_failure,
            rebuild_settles_parked_events,
            in_memory_runners_keep_their_parked_events,
            lease_outlasts_retry_pauses,
            live_runner_reports_recovering_after_a_failed_commit,
            live_runner_stops_when_its_checkpoint_cannot_be_loaded,
            slow_event_outlasting_the_lease_is_handled_once,
            process_manager_issues_each_command_once,
            catch_up_through_sees_the_append,
            checkpoint_in_memory_is_not_stored,
            checkpoint_in_memory_rolls_back_a_projection_keeping_its_own,
            process_manager_tolerated_rejections_count_as_done,
            process_manager_reads_state_as_of_its_event,
            process_manager_reads_stop_at_their_event,
            outcome_tells_its_last_position,
            waiting_for_a_position_sees_ones_own_writes,
            waiting_passes_events_the_projection_does_not_read,
            waiting_ends_when_the_runner_fails,
            in_memory_runner_ignores_a_stored_checkpoint,
            a_standing_by_instance_sees_the_shared_checkpoint,
            a_standing_by_instance_shows_a_forgotten_checkpoint_as_none,
            decider_subscribes_until_the_course_is_full,
            deciders_racing_for_the_last_seats_fill_exactly_the_capacity,
            an_unread_first_attempt_reads_only_when_the_query_selects_events,
            an_unread_first_attempt_rides_out_store_failures_as_the_policy_says,
            unread_first_deciders_racing_to_define_a_course_define_it_once,
            a_decider_with_a_cache_decides_on_kept_states_without_reading,
            a_kept_state_another_writer_moved_on_is_read_again,
            a_rejection_keeps_its_states_where_it_read,
            deciders_with_stale_caches_racing_fill_exactly_the_capacity,
            decider_repeated_command_id_records_once,
            decided_events_carry_their_tags,
            decider_rides_out_store_failures,
        }
    };
}

/// Stamps one `#[tokio::test]` per [crypto-shredding case](personal): personal fields
/// through `es_core::personal::Protected` over a store and its key store. `$factory` makes
/// a fresh, empty `Protected` store; `teardown` as for [`conformance_tests!`].
///
/// ```ignore
/// es_testkit::personal_contract!(async {
///     es_core::personal::Protected::new(
///         es_memory::MemoryEventStore::new(),
///         es_core::personal::MemoryKeyStore::new(),
///     )
/// });
/// ```
#[macro_export]
macro_rules! personal_contract {
    ($factory:expr) => {
        $crate::personal_contract!($factory, teardown = |_store| async {});
    };
    ($factory:expr, teardown = $teardown:expr) => {
        $crate::__conformance_cases! { personal; $factory; $teardown;
            personal_fields_read_back_and_are_stored_encrypted,
            forgetting_gives_the_replacement_on_every_read_path,
            a_fixed_subject_is_forgotten_alike,
            nothing_personal_is_stored_for_a_forgotten_subject,
            a_repeated_append_with_personal_fields_is_idempotent,
            a_key_the_key_store_never_had_is_an_error_not_a_forgotten_value,
            snapshots_are_sealed_and_dropped_once_forgotten,
            a_projection_rebuilt_after_forgetting_shows_the_replacement,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($module:ident; $factory:expr; $teardown:expr; $($case:ident),* $(,)?) => {
        $(
            #[::es_testkit::__private::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "::es_testkit::__private::tokio"
            )]
            async fn $case() {
                let store = $factory.await;
                $crate::$module::$case(::core::clone::Clone::clone(&store)).await;
                ($teardown)(store).await;
            }
        )*
    };
}
