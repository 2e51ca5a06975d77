//! The store contract: the behaviours every store must show, one `pub async fn` each.
//!
//! These check the store itself (appends, reads, the global log, limits, subscriptions,
//! snapshots, checkpoints, leases, archiving, history and upcasting on its read paths, tags,
//! queries and conditional appends), so they run on every configuration of every store
//! (see [`store_contract!`]). Cases that check es-core's engine on top of a store are in
//! [`engine`](crate::engine). Each function takes a fresh, empty store and panics with a
//! message saying what broke.
//!
//! [`store_contract!`]: crate::store_contract

mod append;
mod archive;
mod concurrency;
mod dcb;
mod history;
mod limits;
mod read;
mod storage;
mod subscription;
mod undecodable;
mod upcasting;

pub use append::*;
pub use archive::*;
pub use concurrency::*;
pub use dcb::*;
pub use history::*;
pub use limits::*;
pub use read::*;
pub use storage::*;
pub use subscription::*;
pub use undecodable::*;
pub use upcasting::*;

use es_core::{EventEnvelope, EventFilter, NewEvent, Position, StreamId, Version};
use futures_util::TryStreamExt as _;

use crate::fixture::AccountEvent;
use es_core::Store;

/// The account stream `account-<id>`.
pub(crate) fn account(id: &str) -> StreamId {
    StreamId::new("account", id).expect("valid stream id")
}

/// `n` deposits of 1, 2, ... `n` cents.
pub(crate) fn deposits(n: u64) -> Vec<NewEvent<AccountEvent>> {
    (1..=n)
        .map(|amount| NewEvent::new(AccountEvent::Deposited { amount }))
        .collect()
}

/// The whole stream, typed.
pub(crate) async fn read_stream<S: Store>(
    store: &S,
    stream: &StreamId,
) -> Vec<EventEnvelope<AccountEvent>> {
    store
        .read_stream::<AccountEvent>(stream, Version::INITIAL)
        .try_collect()
        .await
        .unwrap_or_else(|error| panic!("reading `{stream}` failed: {error:?}"))
}

/// The global log after `after`, as `E`, once it holds at least `expected` events.
///
/// A store may hold back the end of its log until every transaction that began before an
/// event has ended (PostgreSQL does, so that a late commit is never skipped), so a read
/// right after an append may not show it yet. This waits for the expected count (a store
/// that lost events never gets there and fails the test); callers then check the exact
/// contents.
pub(crate) async fn read_log<S: Store, E: es_core::DomainEvent>(
    store: &S,
    after: Position,
    filter: EventFilter,
    expected: usize,
) -> Vec<EventEnvelope<E>> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let log: Vec<EventEnvelope<E>> = store
            .read_all::<E>(after, filter.clone())
            .try_collect()
            .await
            .unwrap_or_else(|error| panic!("reading the global log failed: {error:?}"));
        if log.len() >= expected {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the global log shows {} of {expected} events after a minute",
            log.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The versions of `events`, as numbers.
pub(crate) fn versions<E>(events: &[EventEnvelope<E>]) -> Vec<u64> {
    events.iter().map(|e| e.version.get()).collect()
}
