//! [`Reads`]: what a process manager may read besides the event it reacts to, the state of
//! aggregates as it was when that event was recorded.
//!
//! Reading state "as of the triggering event" rather than "now" is what keeps a reaction
//! deterministic: handled again (after a crash, in a rebuild) it sees the same state and
//! calls for the same commands, whatever happened since. It also lets the harness feed a
//! reaction its state ([`ProcessManagerFixture::given_state`]) with no store at all.
//!
//! [`ProcessManagerFixture::given_state`]: crate::testing::ProcessManagerFixture::given_state

use std::fmt;

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

use crate::aggregate::Aggregate;
use crate::error::ReadError;
use crate::event::{DomainEvent, EventEnvelope, RawEvent};
use crate::repository::{LoadError, Loaded};
use crate::store::EventStore;
use crate::stream::{Position, StreamId, Version};

/// Where [`Reads`] finds a stream's events: a store, or the state a test gave.
pub(crate) trait RawStreams: Send + Sync {
    /// The events of `stream`, in version order, undecoded.
    fn raw_stream(
        &self,
        stream: &StreamId,
    ) -> BoxStream<'static, Result<EventEnvelope<RawEvent>, ReadError>>;
}

impl<S: EventStore> RawStreams for S {
    fn raw_stream(
        &self,
        stream: &StreamId,
    ) -> BoxStream<'static, Result<EventEnvelope<RawEvent>, ReadError>> {
        Box::pin(self.read_stream::<RawEvent>(stream, Version::INITIAL.next()))
    }
}

/// The state of aggregates as it was when the event a process manager reacts to was
/// recorded: the events of their streams up to that event's position in the log.
///
/// A reaction gets one with each event ([`ProcessManager::react`]). What it reads is the
/// same every time the event is handled, so a reaction that depends on state still calls
/// for the same commands when it is handled again.
///
/// [`ProcessManager::react`]: crate::ProcessManager::react
///
/// ```
/// use es_core::{Aggregate, DomainEvent, EventEnvelope, ProcessManager, Reads};
/// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// # enum OrderEvent { Placed { customer: String } }
/// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// # enum CustomerEvent { Registered { vip: bool }, Welcomed }
/// # #[derive(Debug, Clone, PartialEq)]
/// # enum CustomerCommand { Welcome }
/// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
/// #[derive(Debug, Default, es_core::AggregateType)]
/// #[aggregate(name = "customer", command = CustomerCommand, event = CustomerEvent, error = Never)]
/// struct Customer { vip: bool }
/// # impl Aggregate for Customer {
/// #     async fn handle(&self, _: CustomerCommand, _: &()) -> Result<Vec<CustomerEvent>, Never> { Ok(vec![CustomerEvent::Welcomed]) }
/// #     fn apply(&mut self, event: &CustomerEvent) { if let CustomerEvent::Registered { vip } = event { self.vip = *vip } }
/// # }
///
/// /// Welcomes the VIP customers on their first order.
/// struct WelcomeVips;
///
/// impl ProcessManager for WelcomeVips {
///     type Event = OrderEvent;
///     type Target = Customer;
///     type Error = es_core::LoadError;
///
///     fn name(&self) -> &str {
///         "welcome-vips"
///     }
///
///     async fn react(&self, envelope: &EventEnvelope<OrderEvent>, reads: &Reads<'_>) -> Result<Vec<(String, CustomerCommand)>, Self::Error> {
///         let OrderEvent::Placed { customer } = &envelope.event;
///         let vip = reads.state::<Customer>(customer).await?.state.vip;
///         Ok(if vip { vec![(customer.clone(), CustomerCommand::Welcome)] } else { vec![] })
///     }
/// }
///
/// use es_core::testing::ProcessManagerFixture;
///
/// ProcessManagerFixture::new(WelcomeVips)
///     .given_state::<Customer>("ada", [CustomerEvent::Registered { vip: true }])
///     .given("order-1", OrderEvent::Placed { customer: "ada".into() })
///     .then_expect_commands([("ada", CustomerCommand::Welcome)]);
///
/// ProcessManagerFixture::new(WelcomeVips)
///     .given("order-1", OrderEvent::Placed { customer: "bob".into() })
///     .then_expect_no_commands();
/// ```
pub struct Reads<'a> {
    source: &'a dyn RawStreams,
    through: Position,
}

impl fmt::Debug for Reads<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reads")
            .field("through", &self.through)
            .finish_non_exhaustive()
    }
}

impl<'a> Reads<'a> {
    /// Reads of `source` as of `through`.
    pub(crate) fn new(source: &'a dyn RawStreams, through: Position) -> Self {
        Self { source, through }
    }

    /// The log position these reads stop at: the triggering event's.
    pub fn through(&self) -> Position {
        self.through
    }

    /// The state of the aggregate `A` with id `id` as of the triggering event: its events
    /// at or before that event's position, applied to its default state (version
    /// [`Version::INITIAL`] if there were none). Events after it are not decoded as
    /// `A::Event`, so one this build cannot read does not fail the reaction.
    ///
    /// It replays the stream from its start (snapshots hold the latest state, not the state
    /// at a past position).
    ///
    /// # Errors
    ///
    /// [`LoadError::InvalidId`] for an id that makes no stream id, [`LoadError::Read`] when
    /// the store fails or an event cannot be decoded.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn state<A: Aggregate>(&self, id: &str) -> Result<Loaded<A>, LoadError> {
        let stream = StreamId::new(A::NAME, id)?;
        let failed = |source| LoadError::Read {
            stream: stream.clone(),
            source,
        };
        let mut events = self.source.raw_stream(&stream);
        let (mut state, mut version) = (A::default(), Version::INITIAL);
        while let Some(envelope) = events.next().await {
            let envelope = match envelope {
                Ok(envelope) => envelope,
                // An event after the trigger that does not even read raw is none of ours.
                Err(ReadError::Decode { position, .. }) if position > self.through => break,
                Err(error) => return Err(failed(error)),
            };
            // Streams grow in log order, so the first later event ends the state.
            if envelope.position > self.through {
                break;
            }
            let EventEnvelope {
                event_id,
                version: at,
                position,
                event: raw,
                ..
            } = envelope;
            let (event_type, schema_version) = (raw.event_type.clone(), raw.schema_version);
            let event =
                A::Event::decode(&event_type, schema_version, raw.payload).map_err(|source| {
                    let error = ReadError::decode(
                        event_id,
                        stream.clone(),
                        at,
                        position,
                        &*event_type,
                        schema_version,
                        source,
                    );
                    failed(error)
                })?;
            state.apply(&event);
            version = at;
        }
        Ok(Loaded {
            stream_id: stream,
            version,
            state,
        })
    }
}
