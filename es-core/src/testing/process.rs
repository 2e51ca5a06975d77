//! The given/then harness for process managers.

use std::fmt::{self, Debug};

use chrono::Utc;

use crate::aggregate::AggregateType;
use crate::event::{EventEnvelope, Metadata};
use crate::process::{CommandFor, ProcessManager};
use crate::stream::{Position, StreamId, Version};

use super::block_on::block_on;
use super::diff::debug_diff;

/// Hands one event to a process manager and checks the commands it calls for.
///
/// ```
/// use es_core::testing::ProcessManagerFixture;
/// use es_core::{Aggregate, DomainEvent, EventEnvelope, ProcessManager};
/// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// # enum OrderEvent { Placed { customer: String }, Cancelled }
/// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// # enum CustomerEvent { Welcomed }
/// # #[derive(Debug, Clone, PartialEq)]
/// # enum CustomerCommand { Welcome }
/// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
/// # #[derive(Debug, Default, es_core::AggregateType)]
/// # #[aggregate(name = "customer", command = CustomerCommand, event = CustomerEvent, error = Never)]
/// # struct Customer;
/// # impl Aggregate for Customer {
/// #     async fn handle(&self, _: CustomerCommand, _: &()) -> Result<Vec<CustomerEvent>, Never> { Ok(vec![CustomerEvent::Welcomed]) }
/// #     fn apply(&mut self, _: &CustomerEvent) {}
/// # }
/// struct Welcome;
///
/// impl ProcessManager for Welcome {
///     type Event = OrderEvent;
///     type Target = Customer;
///     type Error = std::convert::Infallible;
///
///     fn name(&self) -> &str {
///         "welcome"
///     }
///
///     async fn react(&self, envelope: &EventEnvelope<OrderEvent>) -> Result<Vec<(String, CustomerCommand)>, Self::Error> {
///         Ok(match &envelope.event {
///             OrderEvent::Placed { customer } => vec![(customer.clone(), CustomerCommand::Welcome)],
///             OrderEvent::Cancelled => vec![],
///         })
///     }
/// }
///
/// ProcessManagerFixture::new(Welcome)
///     .given("order-1", OrderEvent::Placed { customer: "ada".into() })
///     .then_expect_commands([("ada", CustomerCommand::Welcome)]);
///
/// ProcessManagerFixture::new(Welcome)
///     .given("order-1", OrderEvent::Cancelled)
///     .then_expect_no_commands();
/// ```
pub struct ProcessManagerFixture<M: ProcessManager> {
    manager: M,
}

impl<M: ProcessManager + Debug> Debug for ProcessManagerFixture<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessManagerFixture")
            .field("manager", &self.manager)
            .finish()
    }
}

impl<M: ProcessManager> ProcessManagerFixture<M> {
    /// A fixture around `manager`.
    pub fn new(manager: M) -> Self {
        Self { manager }
    }

    /// This event happened on `stream` (`category-id`), as its first event.
    ///
    /// # Panics
    ///
    /// If `stream` is not a valid stream id.
    #[track_caller]
    pub fn given(self, stream: &str, event: M::Event) -> Reaction<M> {
        let stream_id = match StreamId::parse(stream) {
            Ok(stream_id) => stream_id,
            Err(error) => panic!("`{stream}` is not a stream id: {error}"),
        };
        self.given_envelope(&EventEnvelope {
            event_id: uuid::Uuid::now_v7(),
            stream_id,
            version: Version::new(1),
            position: Position::from_parts(1, 1),
            recorded_at: Utc::now(),
            metadata: Metadata::new(),
            event,
        })
    }

    /// This event happened on `stream` as its version `version` (for reactions that
    /// depend on the version).
    ///
    /// # Panics
    ///
    /// If `stream` is not a valid stream id.
    #[track_caller]
    pub fn given_at(self, stream: &str, version: u64, event: M::Event) -> Reaction<M> {
        let stream_id = match StreamId::parse(stream) {
            Ok(stream_id) => stream_id,
            Err(error) => panic!("`{stream}` is not a stream id: {error}"),
        };
        self.given_envelope(&EventEnvelope {
            event_id: uuid::Uuid::now_v7(),
            stream_id,
            version: Version::new(version),
            position: Position::from_parts(version, version),
            recorded_at: Utc::now(),
            metadata: Metadata::new(),
            event,
        })
    }

    /// This recorded event happened, exactly as given (for reactions that depend on
    /// metadata).
    pub fn given_envelope(self, envelope: &EventEnvelope<M::Event>) -> Reaction<M> {
        let result = block_on(self.manager.react(envelope));
        Reaction { result }
    }
}

/// The commands a process manager called for, ready for expectations.
#[must_use = "a test without a `then_*` expectation checks nothing"]
pub struct Reaction<M: ProcessManager> {
    result: Result<Vec<CommandFor<M::Target>>, M::Error>,
}

impl<M: ProcessManager> Debug for Reaction<M>
where
    <M::Target as AggregateType>::Command: Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reaction")
            .field("result", &self.result)
            .finish()
    }
}

impl<M: ProcessManager> Reaction<M>
where
    <M::Target as AggregateType>::Command: Debug + PartialEq,
{
    /// Expects exactly these commands, each with its target aggregate id, in this order.
    ///
    /// # Panics
    ///
    /// With a diff, if the commands differ or the manager failed.
    #[track_caller]
    pub fn then_expect_commands<I, T>(self, expected: I)
    where
        I: IntoIterator<Item = (T, <M::Target as AggregateType>::Command)>,
        T: Into<String>,
    {
        let expected: Vec<CommandFor<M::Target>> = expected
            .into_iter()
            .map(|(target, command)| (target.into(), command))
            .collect();
        match self.result {
            Ok(actual) if actual == expected => {}
            Ok(actual) => panic!(
                "the process manager called for other commands than expected\n{}",
                debug_diff(&expected, &actual)
            ),
            Err(error) => panic!("the process manager failed: {error:?} ({error})"),
        }
    }

    /// Expects no command.
    ///
    /// # Panics
    ///
    /// If the manager called for commands or failed.
    #[track_caller]
    pub fn then_expect_no_commands(self) {
        match self.result {
            Ok(actual) if actual.is_empty() => {}
            Ok(actual) => {
                panic!("expected no commands, but the process manager called for {actual:#?}")
            }
            Err(error) => panic!("the process manager failed: {error:?} ({error})"),
        }
    }

    /// The raw outcome.
    pub fn into_result(self) -> Result<Vec<CommandFor<M::Target>>, M::Error> {
        self.result
    }
}
