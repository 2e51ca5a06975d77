//! The given/then harness for process managers.

use std::fmt::{self, Debug};

use chrono::Utc;

use std::collections::HashMap;

use futures_util::stream::BoxStream;

use crate::aggregate::{Aggregate, AggregateType};
use crate::error::ReadError;
use crate::event::{EventEnvelope, Metadata, RawEvent};
use crate::process::{CommandFor, ProcessManager};
use crate::reads::{RawStreams, Reads};
use crate::stream::{Position, StreamId, Version};

use super::block_on::block_on;
use super::diff::debug_diff;

/// Hands one event to a process manager and checks the commands it calls for.
///
/// ```
/// use es_core::testing::ProcessManagerFixture;
/// use es_core::{Aggregate, DomainEvent, EventEnvelope, ProcessManager, Reads};
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
///     async fn react(&self, envelope: &EventEnvelope<OrderEvent>, _: &Reads<'_>) -> Result<Vec<(String, CustomerCommand)>, Self::Error> {
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
    /// The state the reaction may read ([`given_state`](Self::given_state)).
    state: GivenState,
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
        Self {
            manager,
            state: GivenState::default(),
        }
    }

    /// The aggregate `A` with id `id` had recorded these events before the event the
    /// manager reacts to: what its [`Reads::state`] then reads. Aggregates not given read
    /// as new (their default state). Given twice, the events add up.
    ///
    /// # Panics
    ///
    /// If `id` makes no valid stream id, or an event cannot be encoded.
    #[track_caller]
    #[must_use]
    pub fn given_state<A: Aggregate>(
        mut self,
        id: &str,
        events: impl IntoIterator<Item = A::Event>,
    ) -> Self {
        let stream = match StreamId::new(A::NAME, id) {
            Ok(stream) => stream,
            Err(error) => panic!("`{id}` is not an id of a `{}` aggregate: {error}", A::NAME),
        };
        let recorded = self.state.streams.entry(stream.clone()).or_default();
        for event in events {
            let raw = match RawEvent::from_event(&event) {
                Ok(raw) => raw,
                Err(error) => panic!("cannot encode a given event of `{stream}`: {error}"),
            };
            let version = Version::new(recorded.len() as u64 + 1);
            recorded.push(EventEnvelope {
                event_id: uuid::Uuid::now_v7(),
                stream_id: stream.clone(),
                version,
                // Before every position a reaction can be given at: given state precedes
                // the event.
                position: Position::START,
                recorded_at: Utc::now(),
                metadata: Metadata::new(),
                event: raw,
            });
        }
        self
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
        // As in a store, the state read includes the event itself; and all the given
        // state counts, whatever position the test gave the event.
        let mut state = self.state;
        match RawEvent::from_event(&envelope.event) {
            Ok(raw) => state
                .streams
                .entry(envelope.stream_id.clone())
                .or_default()
                .push(envelope.clone().map(|_| raw)),
            Err(error) => panic!("cannot encode the given event: {error}"),
        }
        let reads = Reads::new(&state, Position::from_parts(u64::MAX, u64::MAX));
        let result = block_on(self.manager.react(envelope, &reads));
        Reaction { result }
    }
}

/// The streams a test gave ([`ProcessManagerFixture::given_state`]).
#[derive(Debug, Default)]
struct GivenState {
    streams: HashMap<StreamId, Vec<EventEnvelope<RawEvent>>>,
}

impl RawStreams for GivenState {
    fn raw_stream(
        &self,
        stream: &StreamId,
    ) -> BoxStream<'static, Result<EventEnvelope<RawEvent>, ReadError>> {
        let events = self.streams.get(stream).cloned().unwrap_or_default();
        Box::pin(futures_util::stream::iter(events.into_iter().map(Ok)))
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
