//! Aggregates: the consistency boundary that decides on commands and evolves from events.
//!
//! An aggregate is split into two traits so that the derive can write one and you the other:
//!
//! - [`AggregateType`] says *what* the aggregate is: its category name and its command,
//!   event, error and services types, plus snapshot encoding. `#[derive(AggregateType)]`
//!   implements it from `#[aggregate(...)]`.
//! - [`Aggregate`] holds the business logic you write: [`Aggregate::handle`] decides which
//!   events a command produces (or rejects it), [`Aggregate::apply`] evolves the state from
//!   one event.
//!
//! ```
//! use es_core::{Aggregate, DomainEvent};
//!
//! #[derive(Debug, Clone, PartialEq, DomainEvent)]
//! enum CounterEvent {
//!     Incremented { by: u32 },
//! }
//!
//! #[derive(Debug, Clone)]
//! enum CounterCommand {
//!     Increment { by: u32 },
//! }
//!
//! #[derive(Debug, PartialEq, thiserror::Error)]
//! enum CounterError {
//!     #[error("cannot increment by zero")]
//!     Zero,
//! }
//!
//! #[derive(Debug, Default, AggregateType)]
//! #[aggregate(name = "counter", command = CounterCommand, event = CounterEvent, error = CounterError)]
//! struct Counter {
//!     total: u64,
//! }
//!
//! impl Aggregate for Counter {
//!     async fn handle(&self, command: CounterCommand, _: &()) -> Result<Vec<CounterEvent>, CounterError> {
//!         match command {
//!             CounterCommand::Increment { by: 0 } => Err(CounterError::Zero),
//!             CounterCommand::Increment { by } => Ok(vec![CounterEvent::Incremented { by }]),
//!         }
//!     }
//!
//!     fn apply(&mut self, event: &CounterEvent) {
//!         match event {
//!             CounterEvent::Incremented { by } => self.total += u64::from(*by),
//!         }
//!     }
//! }
//!
//! // The derive filled in the type information:
//! use es_core::AggregateType;
//! assert_eq!(Counter::NAME, "counter");
//!
//! // And the repository runs the logic against a store:
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let counters = es_core::Repository::<Counter, _>::new(es_memory::MemoryEventStore::new());
//! counters.execute("c1", CounterCommand::Increment { by: 2 }).await?;
//! let rejected = counters.execute("c1", CounterCommand::Increment { by: 0 }).await;
//! assert_eq!(rejected.unwrap_err().rejection(), Some(&CounterError::Zero));
//! assert_eq!(counters.load("c1").await?.state.total, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;

use serde_json::Value;

use crate::event::DomainEvent;

/// What an aggregate is: its name and types. Implemented by `#[derive(AggregateType)]`.
///
/// The derive also fills in the snapshot hooks: when the aggregate implements serde's
/// `Serialize` and `Deserialize`, [`AggregateType::encode_snapshot`] and
/// [`AggregateType::decode_snapshot`] use them; otherwise the aggregate is never snapshotted.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate type",
    label = "not an aggregate",
    note = "add `#[derive(AggregateType)]` and `#[aggregate(name = \"...\", command = ..., event = ..., error = ...)]` to `{Self}`"
)]
pub trait AggregateType: Default + Send + Sync + 'static {
    /// The category of this aggregate's streams, such as `order` (stream ids `order-<id>`).
    const NAME: &'static str;

    /// The schema version of this aggregate's snapshot encoding. A stored snapshot with
    /// another version is ignored and the aggregate is replayed from its events.
    const SNAPSHOT_VERSION: u32 = 1;

    /// The commands it decides on. `Clone` because a command is decided again when an append
    /// loses an optimistic-concurrency race and is retried.
    type Command: Clone + Send + 'static;

    /// The events it emits and evolves from.
    type Event: DomainEvent;

    /// Why it rejects a command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Outside help its command handler needs (a clock, a pricing service); `()` if none.
    type Services: Send + Sync + 'static;

    /// Encodes the state for a snapshot; `None` if this aggregate is not snapshotted.
    fn encode_snapshot(&self) -> Option<Result<Value, serde_json::Error>> {
        None
    }

    /// Decodes a state encoded by [`AggregateType::encode_snapshot`]; `None` if this
    /// aggregate is not snapshotted.
    fn decode_snapshot(state: Value) -> Option<Result<Self, serde_json::Error>> {
        let _ = state;
        None
    }

    /// Whether two states are equal, when the aggregate implements `PartialEq`; used by the
    /// test harness to check that `apply` is deterministic.
    #[doc(hidden)]
    fn __state_eq(&self, other: &Self) -> Option<bool> {
        let _ = other;
        None
    }
}

/// The business logic of an aggregate: decide and evolve.
///
/// Rules for implementations, which the test harness checks on every `when`:
///
/// - [`handle`](Aggregate::handle) decides only: it has no side effects except through
///   `services`, and returns the events to record (possibly none) or an error;
/// - [`apply`](Aggregate::apply) is infallible and deterministic: the same events applied to
///   the default state always give the same state. It must accept every event `handle` can
///   emit, including ones from older versions of the code.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no decide/evolve logic",
    label = "`Aggregate` is not implemented",
    note = "write `impl es_core::Aggregate for {Self}` with `async fn handle` and `fn apply`"
)]
pub trait Aggregate: AggregateType {
    /// Decides what a command means given the current state: the events to record, or why
    /// the command is rejected.
    ///
    /// Write it as `async fn`; it may await `services`.
    fn handle(
        &self,
        command: Self::Command,
        services: &Self::Services,
    ) -> impl Future<Output = Result<Vec<Self::Event>, Self::Error>> + Send;

    /// Evolves the state by one event.
    fn apply(&mut self, event: &Self::Event);
}
