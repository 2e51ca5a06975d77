//! Given/when/then test harnesses for aggregates and projections, with no store.
//!
//! Enable the `testing` feature (usually in `[dev-dependencies]`).
//!
//! # Aggregates
//!
//! [`AggregateTestExt::test`] starts a test: *given* past events, *when* a command, *then*
//! expect events or an error. A failed expectation panics with a line-by-line diff.
//!
//! ```
//! use es_core::prelude::*;
//! # #[derive(Debug, Clone, PartialEq, DomainEvent)]
//! # enum CounterEvent { Incremented { by: u32 } }
//! # #[derive(Debug, Clone)]
//! # enum CounterCommand { Increment { by: u32 } }
//! # #[derive(Debug, PartialEq, thiserror::Error)]
//! # enum CounterError { #[error("cannot increment by zero")] Zero }
//! # #[derive(Debug, Default, PartialEq, AggregateType)]
//! # #[aggregate(name = "counter", command = CounterCommand, event = CounterEvent, error = CounterError)]
//! # struct Counter { total: u64 }
//! # impl Aggregate for Counter {
//! #     async fn handle(&self, command: CounterCommand, _: &()) -> Result<Vec<CounterEvent>, CounterError> {
//! #         match command {
//! #             CounterCommand::Increment { by: 0 } => Err(CounterError::Zero),
//! #             CounterCommand::Increment { by } => Ok(vec![CounterEvent::Incremented { by }]),
//! #         }
//! #     }
//! #     fn apply(&mut self, event: &CounterEvent) {
//! #         match event { CounterEvent::Incremented { by } => self.total += u64::from(*by) }
//! #     }
//! # }
//!
//! Counter::test()
//!     .given([CounterEvent::Incremented { by: 1 }])
//!     .when(CounterCommand::Increment { by: 2 })
//!     .then_expect_events([CounterEvent::Incremented { by: 2 }]);
//!
//! Counter::test()
//!     .given_no_previous_events()
//!     .when(CounterCommand::Increment { by: 0 })
//!     .then_expect_error(CounterError::Zero);
//! ```
//!
//! On every `when` that the aggregate accepts, the harness also checks what event-sourced
//! code most often gets wrong and no other check catches:
//!
//! - every given and emitted event survives its own encoding (encode, then decode, gives the
//!   same event), as it must to come back from a real store;
//! - `apply` is deterministic: folding the given and emitted events from the default state
//!   twice gives equal states (compared with `PartialEq` when the aggregate has it, else
//!   through its serde encoding; skipped if it has neither);
//! - when the aggregate is serializable, its state survives a snapshot round trip.
//!
//! # Schema evolution
//!
//! [`EventTestExt::stored`] takes an event as an older version of the application stored
//! it and checks what it reads as today ([`StoredEvent::upcasts_to`]) or that it is refused
//! ([`StoredEvent::fails`]); [`AggregateFixture::given_stored`] starts an aggregate test
//! from such events.
//!
//! # Decisions
//!
//! [`DecisionTestExt::test`] starts a test of a [`Decision`](crate::Decision): *given*
//! events (with the tags they declare, or [`given_tagged`](DecisionFixture::given_tagged)),
//! *when* the decision, *then* expect events (with their tags), an error or the folded
//! states; [`then_expect_selected_by_query`](DecisionThen::then_expect_selected_by_query)
//! checks that what it appends falls in its own query, which racing decisions rely on.
//!
//! # Projections and process managers
//!
//! [`ProjectionFixture`] feeds events to a projection and compares the view it built;
//! [`ProcessManagerFixture`] hands an event to a process manager and compares the commands
//! it calls for.

mod aggregate;
mod block_on;
mod decision;
mod diff;
mod process;
mod projection;
mod upcast;

pub use aggregate::{AggregateFixture, AggregateTestExt, Given, Then};
pub use decision::{DecisionFixture, DecisionGiven, DecisionTestExt, DecisionThen};
pub use process::{ProcessManagerFixture, Reaction};
pub use projection::ProjectionFixture;
pub use upcast::{EventTestExt, StoredEvent};
