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

mod checkpoints;
mod decisions;
mod failures;
mod leases;
mod partitions;
mod process_managers;
mod read_your_writes;
mod repository;

pub use checkpoints::*;
pub use decisions::*;
pub use failures::*;
pub use leases::*;
pub use partitions::*;
pub use process_managers::*;
pub use read_your_writes::*;
pub use repository::*;

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
