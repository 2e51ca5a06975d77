//! Event sourcing and CQRS for Rust.
//!
//! `es-core` holds the model every part of es-rs shares:
//!
//! - **Events**: [`DomainEvent`] (derive it), recorded as [`EventEnvelope`]s with
//!   [`Metadata`] (correlation, causation, actor).
//! - **Aggregates**: [`AggregateType`] (derive it with `#[derive(AggregateType)]`) says what an
//!   aggregate is; [`Aggregate`] holds the decide (`handle`) and evolve (`apply`) logic you
//!   write.
//! - **The store contract**: [`EventStore`] (streams and the global log), [`SnapshotStore`],
//!   and what runners keep ([`CheckpointStore`], [`DeadLetterStore`], [`LeaseStore`]); all
//!   five together are [`Store`], implemented by `es-memory` and `es-postgres` with
//!   identical semantics.
//! - **Command execution**: [`Repository`] loads, decides, appends with optimistic
//!   concurrency, retries conflicts, deduplicates by command id and takes snapshots.
//! - **Projections**: [`Projection`] folds events into read models; [`ProjectionRunner`]
//!   feeds it from its checkpoint, with batching, error policies, leases, partitions and
//!   rebuilds.
//! - **Decisions across aggregates** (Dynamic Consistency Boundaries): events carry
//!   [`Tag`]s, a [`Query`] selects them by type and tag across streams, and
//!   [`EventStore::append_if`] appends only if nothing the query selects was stored since
//!   the decision read; a [`Decision`] declares its [`DecisionState`]s and a [`Decider`]
//!   reads, decides, appends and retries.
//! - **Process managers**: [`ProcessManager`] reacts to events with commands, run
//!   idempotently by [`ProcessManagerProjection`].
//! - **Testing** (feature `testing`): the given/when/then harness in [`testing`].
//!
//! # A whole aggregate
//!
//! ```
//! use es_core::prelude::*;
//! use es_memory::MemoryEventStore;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, DomainEvent)]
//! enum AccountEvent {
//!     Opened { owner: String },
//!     Deposited { amount: u64 },
//!     Withdrawn { amount: u64 },
//! }
//!
//! #[derive(Debug, Clone)]
//! enum AccountCommand {
//!     Open { owner: String },
//!     Deposit { amount: u64 },
//!     Withdraw { amount: u64 },
//! }
//!
//! #[derive(Debug, PartialEq, thiserror::Error)]
//! enum AccountError {
//!     #[error("the account is already open")]
//!     AlreadyOpen,
//!     #[error("the account is not open")]
//!     NotOpen,
//!     #[error("insufficient funds: balance {balance}, requested {requested}")]
//!     InsufficientFunds { balance: u64, requested: u64 },
//! }
//!
//! #[derive(Debug, Default, PartialEq, Serialize, Deserialize, AggregateType)]
//! #[aggregate(name = "account", command = AccountCommand, event = AccountEvent, error = AccountError)]
//! struct Account {
//!     open: bool,
//!     balance: u64,
//! }
//!
//! impl Aggregate for Account {
//!     async fn handle(&self, command: AccountCommand, _: &()) -> Result<Vec<AccountEvent>, AccountError> {
//!         use AccountCommand::*;
//!         match command {
//!             Open { .. } if self.open => Err(AccountError::AlreadyOpen),
//!             Open { owner } => Ok(vec![AccountEvent::Opened { owner }]),
//!             _ if !self.open => Err(AccountError::NotOpen),
//!             Deposit { amount } => Ok(vec![AccountEvent::Deposited { amount }]),
//!             Withdraw { amount } if amount > self.balance => Err(AccountError::InsufficientFunds {
//!                 balance: self.balance,
//!                 requested: amount,
//!             }),
//!             Withdraw { amount } => Ok(vec![AccountEvent::Withdrawn { amount }]),
//!         }
//!     }
//!
//!     fn apply(&mut self, event: &AccountEvent) {
//!         match event {
//!             AccountEvent::Opened { .. } => self.open = true,
//!             AccountEvent::Deposited { amount } => self.balance += amount,
//!             AccountEvent::Withdrawn { amount } => self.balance -= amount,
//!         }
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let accounts = Repository::<Account, _>::new(MemoryEventStore::new());
//! accounts.execute("ada", AccountCommand::Open { owner: "Ada".into() }).await?;
//! accounts.execute("ada", AccountCommand::Deposit { amount: 100 }).await?;
//!
//! let rejected = accounts.execute("ada", AccountCommand::Withdraw { amount: 500 }).await;
//! assert!(matches!(
//!     rejected.unwrap_err().rejection(),
//!     Some(AccountError::InsufficientFunds { balance: 100, requested: 500 })
//! ));
//!
//! let account = accounts.load("ada").await?;
//! assert_eq!((account.state.balance, account.version.get()), (100, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! | Feature   | Default | What it adds                                                      |
//! |-----------|---------|-------------------------------------------------------------------|
//! | `derive`  | yes     | `#[derive(AggregateType)]` and `#[derive(DomainEvent)]`           |
//! | `testing` | no      | [`testing`]: the given/when/then harness                          |
//! | `schema`  | no      | [`EventSchema`] and its derive: each event type's payload schema  |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod aggregate;
mod backoff;
mod cache;
mod command;
pub mod decision;
pub mod error;
mod event;
mod filter;
pub mod limits;
mod metadata;
mod payload;
pub mod personal;
mod process;
mod projection;
mod query;
mod reads;
mod repository;
mod runner;
#[cfg(feature = "schema")]
mod schema;
mod store;
mod stream;
mod tag;
pub mod telemetry;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[doc(inline)]
pub use crate::aggregate::{Aggregate, AggregateType};
#[doc(inline)]
pub use crate::backoff::Backoff;
#[doc(inline)]
pub use crate::command::{CommandContext, CommandOutcome};
#[doc(inline)]
pub use crate::decision::{
    Decided, Decider, Decision, DecisionError, DecisionState, DecisionStates,
};
#[doc(inline)]
pub use crate::error::{AppendError, CommandError, ReadError, StoreError, StoreErrorKind};
#[doc(inline)]
pub use crate::event::{
    DecodeError, DomainEvent, EncodeError, EventEnvelope, Metadata, NewEvent, RawEvent, UpcastError,
};
#[doc(inline)]
pub use crate::filter::{EventFilter, Partition};
#[doc(inline)]
pub use crate::payload::{PayloadError, PayloadErrorCategory};
#[doc(inline)]
pub use crate::process::{CommandFor, ProcessError, ProcessManager, ProcessManagerProjection};
#[doc(inline)]
pub use crate::projection::Projection;
#[doc(inline)]
pub use crate::query::{AppendCondition, Query, QueryItem};
#[doc(inline)]
pub use crate::reads::Reads;
#[doc(inline)]
pub use crate::repository::{AsOf, LoadError, Loaded, Repository, RetryPolicy, SnapshotPolicy};
#[doc(inline)]
pub use crate::runner::{
    ErrorPolicy, OnFailure, ProjectionRunner, ProjectionStatus, RunnerError, RunnerState,
    StatusHandle, WaitError,
};
#[doc(inline)]
pub use crate::store::{
    CheckpointStore, Committed, DeadLetterStore, EventStore, LeaseStore, LoadItem, LoadStart,
    ParkedEvent, Snapshot, SnapshotStore, Stall, Store,
};
#[doc(inline)]
pub use crate::stream::{
    ExpectedVersion, ParsePositionError, Position, StreamId, StreamIdError, Version,
};
#[doc(inline)]
pub use crate::tag::{Tag, TagError};

/// Derives [`AggregateType`] from `#[aggregate(...)]`; you write [`Aggregate`].
///
/// See [`es_macros::AggregateType`] for the attribute reference.
#[cfg(feature = "derive")]
#[cfg_attr(docsrs, doc(cfg(feature = "derive")))]
pub use es_macros::AggregateType;

// `#[derive(Aggregate)]` is a compile error that points to `AggregateType`.
#[doc(hidden)]
#[cfg(feature = "derive")]
pub use es_macros::Aggregate;

/// Derives [`DomainEvent`] for an enum (one event type per variant) or a struct.
///
/// See [`es_macros::DomainEvent`] for the attribute reference, including which
/// `#[serde(...)]` placements shape the stored payload and which are refused.
#[cfg(feature = "derive")]
#[cfg_attr(docsrs, doc(cfg(feature = "derive")))]
pub use es_macros::DomainEvent;

/// Derives [`EventSchema`] for a type that derives [`DomainEvent`]: the JSON Schema of
/// every event type's payload, with its name, version and doc comment.
///
/// See [`es_macros::EventSchema`] for what it reads.
#[cfg(feature = "schema")]
#[cfg_attr(docsrs, doc(cfg(feature = "schema")))]
pub use es_macros::EventSchema;

#[cfg(feature = "schema")]
#[cfg_attr(docsrs, doc(cfg(feature = "schema")))]
pub use crate::schema::{EventDescription, EventSchema};

/// What most application code needs, `use es_core::prelude::*;`: the traits you implement
/// or derive (aggregates, events, projections, process managers), the types their methods
/// take, what runs them, and with the `testing` feature the harness entry points.
///
/// Not here, because code that needs them names them: the store traits other than
/// [`EventStore`] (implemented by stores and used through [`Store`] bounds), policies,
/// errors and the raw append types; and the decisions' harness,
/// [`DecisionTestExt`](crate::testing::DecisionTestExt): its `test()` beside the
/// aggregates' would blur the message for an aggregate that lacks its `Aggregate` impl
/// into one about two traits.
pub mod prelude {
    pub use crate::{
        Aggregate, AggregateType, Decision, DecisionState, DomainEvent, EventStore, ProcessManager,
        Projection,
    };
    pub use crate::{
        CommandContext, Decider, EventEnvelope, EventFilter, ProjectionRunner, Reads, Repository,
        StreamId,
    };

    #[cfg(feature = "testing")]
    pub use crate::testing::{AggregateTestExt, EventTestExt};
}
