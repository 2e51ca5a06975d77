//! The engine cases: the code of es-core that runs on top of any store ([`Repository`],
//! [`ProjectionRunner`], process managers, [`Decider`]), one `pub async fn` each.
//!
//! These check es-core, not the store: the store underneath only needs to keep the
//! [store contract](crate::conformance). They run once per kind of store (see
//! [`engine_cases!`](crate::engine_cases)), where the contract runs once per configuration.
//! Each function takes a fresh, empty store and panics with a message saying what broke.
//!
//! [`Repository`]: es_core::Repository
//! [`Decider`]: es_core::Decider

mod cached_decisions;
mod checkpoints;
mod decisions;
mod failures;
mod leases;
mod partitions;
mod process_managers;
mod read_your_writes;
mod repository;
mod unread_decisions;

pub use cached_decisions::{
    a_decider_with_a_cache_decides_on_kept_states_without_reading,
    a_kept_state_another_writer_moved_on_is_read_again, a_rejection_keeps_its_states_where_it_read,
    deciders_with_stale_caches_racing_fill_exactly_the_capacity,
};
pub use checkpoints::{
    catch_up_through_sees_the_append, checkpoint_in_memory_is_not_stored,
    checkpoint_in_memory_rolls_back_a_projection_keeping_its_own,
    killed_projection_resumes_exactly_once, killed_projection_without_own_checkpoint_loses_nothing,
    projection_catches_up_and_resumes_from_its_checkpoint,
    rebuild_gives_the_view_live_processing_gave, resumed_runner_reports_its_checkpoint,
};
pub use decisions::{
    decided_events_carry_their_tags, decider_repeated_command_id_records_once,
    decider_rides_out_store_failures, decider_subscribes_until_the_course_is_full,
    deciders_racing_for_the_last_seats_fill_exactly_the_capacity,
};
pub use failures::{
    failing_event_is_parked_and_can_be_retried, in_memory_runners_keep_their_parked_events,
    live_runner_reports_recovering_after_a_failed_commit,
    live_runner_stops_when_its_checkpoint_cannot_be_loaded, rebuild_settles_parked_events,
    status_reports_position_lag_and_errors, stop_policy_keeps_the_events_before_the_failure,
    stop_policy_stops_at_the_failing_event,
};
pub use leases::{
    lease_outlasts_retry_pauses, slow_event_outlasting_the_lease_is_handled_once,
    two_instances_handle_each_event_once,
};
pub use partitions::{
    partitioned_runners_split_streams_and_keep_order,
    partitions_of_one_read_model_resume_and_rebuild_together,
};
pub use process_managers::{
    process_manager_issues_each_command_once, process_manager_reads_state_as_of_its_event,
    process_manager_reads_stop_at_their_event, process_manager_tolerated_rejections_count_as_done,
};
pub use read_your_writes::{
    a_standing_by_instance_sees_the_shared_checkpoint,
    a_standing_by_instance_shows_a_forgotten_checkpoint_as_none,
    in_memory_runner_ignores_a_stored_checkpoint, outcome_tells_its_last_position,
    waiting_ends_when_the_runner_fails, waiting_for_a_position_sees_ones_own_writes,
    waiting_passes_events_the_projection_does_not_read,
};
pub use repository::{
    repository_cache_never_decides_on_stale_state,
    repository_command_costs_one_load_and_one_append, repository_command_id_is_idempotent,
    repository_commands_under_contention_lose_nothing,
    repository_context_without_command_id_can_be_reused, repository_rides_out_store_failures,
    repository_snapshot_state_equals_replayed_state,
};
pub use unread_decisions::{
    an_unread_first_attempt_reads_only_when_the_query_selects_events,
    an_unread_first_attempt_rides_out_store_failures_as_the_policy_says,
    unread_first_deciders_racing_to_define_a_course_define_it_once,
};

use std::time::Duration;

use es_core::{EventFilter, ExpectedVersion, NewEvent, ProjectionRunner};
use uuid::Uuid;

use crate::conformance::{account, read_log};
use crate::fixture::AccountEvent;
use es_core::Store;

/// Generous bound on work that should finish at once; it bounds a hang, it does not
/// measure speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// Appends `n` deposits of 1..=n to `id`, one append each; returns their event ids.
async fn deposit<S: Store>(store: &S, id: &str, n: u64) -> Vec<Uuid> {
    let stream = account(id);
    let mut ids = Vec::new();
    for amount in 1..=n {
        let committed = store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent::new(AccountEvent::Deposited { amount })],
            )
            .await
            .unwrap();
        ids.push(committed.events[0].event_id);
    }
    ids
}

/// Waits until the global log shows `total` events: a store may hold back fresh events
/// for a moment (see [`read_log`]), and a catch-up reads only what is visible.
async fn settled<S: Store>(store: &S, total: usize) {
    read_log::<S, es_core::RawEvent>(store, es_core::Position::START, EventFilter::all(), total)
        .await;
}

/// A runner with small batches, a short lease and frequent commits, so that a case sees
/// several of each.
fn runner<S: Store, P: es_core::Projection>(store: &S, projection: P) -> ProjectionRunner<P, S> {
    ProjectionRunner::new(store.clone(), projection)
        .with_batch_size(5)
        .with_lease(Some(Duration::from_millis(500)))
        .with_commit_interval(Duration::from_millis(20))
}
