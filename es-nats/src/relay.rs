//! The relay: the committed log, in order, to JetStream, each event once.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use es_asyncapi::{Address, Channel};
use es_core::{
    CheckpointStore, ErrorPolicy, EventEnvelope, EventFilter, EventStore, OnFailure, Position,
    Projection, ProjectionRunner, RawEvent, StreamId, Version,
};
use uuid::Uuid;

use crate::error::RelayError;
use crate::message;
use crate::stream::{self, StreamSpec};

/// Relays the committed log to a JetStream stream: every event of the routed categories,
/// in log order, each stored once.
///
/// A relay is a [`Projection`] of [`RawEvent`]s, run by a [`ProjectionRunner`], which
/// brings the runner's status, lease and restarts; [`Relay::runner`] sets one up as a relay
/// must run (a lease; the whole log, not a partition; its own checkpoint, not one in memory;
/// stop, never park, after retries). Run otherwise, it refuses with a typed error. Each event is published to
/// its route's subject with the [headers](es_asyncapi::headers) the AsyncAPI document
/// describes and its stored payload, unchanged (consumers upcast). How it keeps its
/// promises:
///
/// - **Each event once.** `Nats-Msg-Id` is the event id, so JetStream drops a message
///   published again within the stream's duplicate window. Beyond it too: on every
///   (re)start the relay lets its publishes still in flight be answered, asks JetStream for
///   the newest message it holds, checks that it is this log's event at that position, and
///   resumes after it (after the relay's checkpoint only when the stream is empty, as when
///   retention removed everything).
/// - **In order.** Each message expects its predecessor: `Nats-Expected-Last-Msg-Id`, the
///   previous event's id, or, for the first after a (re)start, `Nats-Expected-Last-Sequence`
///   (JetStream keeps sequences across its own restarts, message ids only within the
///   duplicate window). JetStream stores a message only right after the one it expects, so a
///   message lost on the way is never overtaken by a later one; the later ones are refused,
///   the relay restarts from what JetStream holds, and publishes again in order. Per-stream
///   order follows.
/// - **Acknowledged before the checkpoint moves.** Publishes are pipelined, at most
///   [`max_in_flight`](RelayBuilder::max_in_flight) unacknowledged, and the checkpoint is
///   saved (in the event store's [`CheckpointStore`]) only after every ack came back.
///
/// The relay must be the only publisher to its JetStream stream. Events of streams archived
/// before the relay reached them are not relayed (the log's default filter, as for every
/// projection); archiving a stream later does not remove what was relayed.
///
/// ```no_run
/// # async fn example(store: es_memory::MemoryEventStore) -> Result<(), Box<dyn std::error::Error>> {
/// use es_nats::Relay;
/// use std::time::Duration;
///
/// let client = async_nats::connect("127.0.0.1:4222").await?;
/// let relay = Relay::builder(store.clone(), async_nats::jetstream::new(client))
///     .route("order", "orders.{streamId}")
///     .build()
///     .await?;
/// relay.runner(Duration::from_secs(30)).run().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Relay<S> {
    store: S,
    jetstream: Context,
    name: String,
    stream: String,
    routes: BTreeMap<String, Address>,
    max_in_flight: usize,
    in_flight: VecDeque<Pending>,
    /// What the next message expects JetStream to hold last: the previous event's id, or,
    /// right after a (re)start, the stream's last sequence (JetStream forgets the last
    /// message id when it restarts after a quiet spell longer than its duplicate window, but
    /// never the sequence).
    expect: Expect,
    /// What `expect` was after the last commit or resume: where a rolled-back batch's
    /// chain starts again.
    committed: Expect,
    /// Whether the runner asked where to resume: only then is `expect` known.
    loaded: bool,
    relayed: u64,
}

/// What a publish expects JetStream to hold last.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Nothing: the stream is empty.
    Nothing,
    /// The message with this sequence, whatever its id.
    Sequence(u64),
    /// The message with this id (the event before).
    Event(Uuid),
}

/// A publish whose ack has not come back yet.
struct Pending {
    ack: PublishAckFuture,
    stream: StreamId,
    version: Version,
    event_type: String,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("stream", &self.stream)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Sets up a [`Relay`]: its routes, JetStream stream and limits.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is awaited"]
pub struct RelayBuilder<S> {
    store: S,
    jetstream: Context,
    name: String,
    stream: String,
    routes: Vec<(String, String)>,
    duplicate_window: Duration,
    max_age: Option<Duration>,
    max_in_flight: usize,
}

impl<S> Relay<S>
where
    S: EventStore + CheckpointStore,
{
    /// A builder for a relay of `store`'s log over `jetstream`.
    pub fn builder(store: S, jetstream: Context) -> RelayBuilder<S> {
        RelayBuilder {
            store,
            jetstream,
            name: "nats-relay".to_owned(),
            stream: "ES_EVENTS".to_owned(),
            routes: Vec::new(),
            duplicate_window: Duration::from_secs(120),
            max_age: None,
            max_in_flight: 256,
        }
    }

    /// How many events JetStream acknowledged since this relay was built, duplicates
    /// included.
    #[must_use]
    pub fn relayed(&self) -> u64 {
        self.relayed
    }

    /// The JetStream stream it publishes to.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Waits for every publish still in flight to be answered (each ack has the client's
    /// deadline), whatever the answer: after a failure, what JetStream holds last must be
    /// final before anyone asks it.
    async fn drain(&mut self) {
        while let Some(pending) = self.in_flight.pop_front() {
            let _ = pending.ack.await;
        }
    }

    async fn await_oldest(&mut self) -> Result<(), RelayError> {
        let Some(pending) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match pending.ack.await {
            Ok(_) => {
                self.relayed += 1;
                Ok(())
            }
            Err(source) => Err(RelayError::Publish {
                stream: pending.stream,
                version: pending.version,
                event_type: pending.event_type,
                kind: source.kind(),
                source,
            }),
        }
    }
}

impl<S: es_core::Store> Relay<S> {
    /// A runner for this relay, set up as a relay must run: with a lease of `lease` (so one
    /// instance publishes at a time), on the whole log (not a partition), its checkpoint
    /// kept by the relay (not in memory), and an error policy that retries and then stops,
    /// never parks (a parked event would leave a gap in the stream and arrive later, out of
    /// order). Transient failures (a dropped connection, a timeout) do not count against an
    /// event: the runner starts over from what JetStream holds.
    ///
    /// Run it with [`run`](ProjectionRunner::run), or
    /// [`catch_up`](ProjectionRunner::catch_up) to relay what the log holds now.
    pub fn runner(self, lease: Duration) -> ProjectionRunner<Self, S> {
        let store = self.store.clone();
        ProjectionRunner::new(store, self)
            .with_lease(Some(lease))
            .with_error_policy(
                ErrorPolicy::retry(5, Duration::from_millis(200)).then(OnFailure::Stop),
            )
    }
}

impl<S> RelayBuilder<S>
where
    S: EventStore + CheckpointStore,
{
    /// Names the relay: its checkpoint and, under a runner with a lease, its lease.
    /// Default `nats-relay`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The JetStream stream to publish to, created if missing. Default `ES_EVENTS`.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// Relays category `category`'s events to `address`, a subject pattern such as
    /// `orders.{streamId}` (see [`Address`]).
    pub fn route(mut self, category: impl Into<String>, address: impl Into<String>) -> Self {
        self.routes.push((category.into(), address.into()));
        self
    }

    /// Relays an AsyncAPI channel's category to its address, so the document and the
    /// relay agree.
    pub fn channel(self, channel: &Channel) -> Self {
        self.route(channel.category(), channel.address())
    }

    /// How long JetStream remembers message ids to drop repeats, for a stream the relay
    /// creates. Default 2 minutes. Across restarts the relay resumes after what JetStream
    /// holds, once the publishes it had in flight were answered; the window is what drops
    /// the repeats of two instances racing (without a lease, or when one outlived its lease
    /// in a pause), so keep it longer than the lease.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// How long JetStream keeps messages, for a stream the relay creates. Default: for ever
    /// (limits retention, no age limit): the stream is a replica of the log.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// How many publishes may await their ack at once. Default 256.
    pub fn max_in_flight(mut self, publishes: usize) -> Self {
        self.max_in_flight = publishes.max(1);
        self
    }

    /// Checks the routes, creates the JetStream stream or checks that it can take the
    /// relay's subjects, and builds the relay.
    ///
    /// # Errors
    ///
    /// [`RelayError::InvalidRoute`], [`DuplicateRoute`](RelayError::DuplicateRoute) or
    /// [`NoRoutes`](RelayError::NoRoutes) for bad routes;
    /// [`JetStreamUnavailable`](RelayError::JetStreamUnavailable) for a server without
    /// JetStream; [`StreamConflict`](RelayError::StreamConflict) for a stream that cannot
    /// take them; [`JetStream`](RelayError::JetStream) if a request fails.
    pub async fn build(self) -> Result<Relay<S>, RelayError> {
        if self.routes.is_empty() {
            return Err(RelayError::NoRoutes);
        }
        let mut routes = BTreeMap::new();
        for (category, address) in self.routes {
            let parsed =
                Address::parse(&format!("route for `{category}`"), &address).map_err(|source| {
                    RelayError::InvalidRoute {
                        category: category.clone(),
                        source,
                    }
                })?;
            if routes.insert(category.clone(), parsed).is_some() {
                return Err(RelayError::DuplicateRoute { category });
            }
        }
        let spec = StreamSpec {
            name: self.stream.clone(),
            subjects: routes.values().map(Address::filter).collect(),
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
        };
        stream::ensure(&self.jetstream, &spec).await?;
        Ok(Relay {
            store: self.store,
            jetstream: self.jetstream,
            name: self.name,
            stream: self.stream,
            routes,
            max_in_flight: self.max_in_flight,
            in_flight: VecDeque::new(),
            expect: Expect::Nothing,
            committed: Expect::Nothing,
            loaded: false,
            relayed: 0,
        })
    }
}

impl<S> Projection for Relay<S>
where
    S: EventStore + CheckpointStore,
{
    type Event = RawEvent;
    type Error = RelayError;

    fn name(&self) -> &str {
        &self.name
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all().with_categories(self.routes.keys().cloned())
    }

    async fn handle(&mut self, envelope: &EventEnvelope<RawEvent>) -> Result<(), RelayError> {
        let publish_error =
            |source: async_nats::jetstream::context::PublishError| RelayError::Publish {
                stream: envelope.stream_id.clone(),
                version: envelope.version,
                event_type: envelope.event.event_type.clone(),
                kind: source.kind(),
                source,
            };
        if !self.loaded {
            return Err(RelayError::NotResumed);
        }
        // The filter selects only routed categories.
        let Some(address) = self.routes.get(envelope.stream_id.category()) else {
            return Ok(());
        };
        let subject = address.subject(&envelope.stream_id);
        let (mut headers, payload) =
            message::encode(envelope).map_err(|source| RelayError::Encode {
                stream: envelope.stream_id.clone(),
                version: envelope.version,
                source,
            })?;
        match self.expect {
            Expect::Nothing => {}
            Expect::Sequence(sequence) => headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SEQUENCE,
                sequence.to_string().as_str(),
            ),
            Expect::Event(id) => headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID,
                id.to_string().as_str(),
            ),
        }
        let ack = self
            .jetstream
            .send_publish(
                subject,
                PublishMessage::build().headers(headers).payload(payload),
            )
            .await
            .map_err(publish_error)?;
        self.expect = Expect::Event(envelope.event_id);
        self.in_flight.push_back(Pending {
            ack,
            stream: envelope.stream_id.clone(),
            version: envelope.version,
            event_type: envelope.event.event_type.clone(),
        });
        while self.in_flight.len() > self.max_in_flight {
            self.await_oldest().await?;
        }
        Ok(())
    }

    fn is_transient(&self, error: &RelayError) -> bool {
        error.is_transient()
    }

    async fn reset(&mut self) -> Result<(), RelayError> {
        // JetStream stays the record of what was relayed: a rebuild publishes only what it
        // does not hold.
        self.store.delete_checkpoint(&self.name).await?;
        Ok(())
    }

    fn keeps_own_checkpoint(&self) -> bool {
        true
    }

    /// The stored checkpoint only, for a relay standing by: loading drains acks, asks
    /// JetStream for its last message and sets the chain the next publish expects, none
    /// of which an instance that is not relaying may do.
    async fn committed_checkpoint(&mut self, key: &str) -> Result<Option<Position>, RelayError> {
        Ok(self.store.load_checkpoint(key).await?)
    }

    async fn load_checkpoint(&mut self, key: &str) -> Result<Option<Position>, RelayError> {
        if key != self.name {
            // A partition's relay would resume after the other partitions' events and
            // chain against them: the log's order is one order.
            return Err(RelayError::Partitioned {
                key: key.to_owned(),
            });
        }
        self.drain().await;
        let saved = self.store.load_checkpoint(key).await?;
        let last = stream::last_relayed(&self.jetstream, &self.stream).await?;
        self.loaded = true;
        let Some(last) = last else {
            self.expect = Expect::Nothing;
            self.committed = Expect::Nothing;
            tracing::info!(relay = %self.name, stream = %self.stream, checkpoint = ?saved, "the stream holds no event: resuming after the checkpoint");
            return Ok(saved);
        };
        // What JetStream holds last must be this log's event at that position; anything
        // else means the stream was filled from another store (or the log was reset), and
        // resuming after that position would skip events silently.
        let found = self.store.find_event::<RawEvent>(last.event_id).await?;
        if found
            .as_ref()
            .is_none_or(|event| event.position != last.position)
        {
            return Err(RelayError::StreamConflict {
                stream: self.stream.clone(),
                reason: format!(
                    "its last message is event {} at position {}, which this store's log does \
                     not hold there: the stream was filled from another store; relay to \
                     another stream, or purge it if the log was reset",
                    last.event_id, last.position
                ),
            });
        }
        self.expect = Expect::Sequence(last.sequence);
        self.committed = self.expect;
        if saved.is_some_and(|saved| saved > last.position) {
            // The checkpoint is ahead of what JetStream holds: messages it acknowledged were
            // lost (a broker host crash before its flush) or removed by hand. Publishing
            // them again loses nothing; skipping them would.
            tracing::warn!(relay = %self.name, stream = %self.stream, checkpoint = ?saved, held = %last.position, "JetStream holds less than the checkpoint says was relayed: resuming after what it holds");
        }
        Ok(Some(last.position))
    }

    async fn commit(&mut self, key: &str, position: Position) -> Result<(), RelayError> {
        while !self.in_flight.is_empty() {
            self.await_oldest().await?;
        }
        self.committed = self.expect;
        self.store.save_checkpoint(key, position).await?;
        Ok(())
    }

    async fn rollback(&mut self) -> Result<(), RelayError> {
        // The batch's publishes may or may not be stored; let them be answered. If the
        // runner then retries an event without reloading, its chain starts after the last
        // committed event: a repeat of a stored message is then a duplicate JetStream drops,
        // and a message after a lost one is refused. A reload asks JetStream instead.
        self.drain().await;
        self.expect = self.committed;
        Ok(())
    }
}
