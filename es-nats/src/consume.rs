//! Another service's side: a [`Projection`] (or a process manager, through
//! [`ProcessManagerProjection`](es_core::ProcessManagerProjection)) fed by a durable
//! JetStream consumer, [`Consumer`].

use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer};
use es_core::{CheckpointStore, EventFilter, Position, Projection};
use futures_util::StreamExt as _;
use tracing::Instrument as _;

use crate::error::ConsumeError;
use crate::message::{self, Described};

/// Feeds a projection from a durable JetStream pull consumer, with explicit acks, each
/// event handled once.
///
/// Messages come in batches. Each is read back as the projection's event type (upcast as
/// by any store read); those the projection's [`filter`](Projection::filter) does not
/// select are acknowledged and skipped. After a batch, the projection
/// [commits](Projection::commit), the position of its last event is saved as the
/// consumer's checkpoint (in `checkpoints`, or the projection's own if it
/// [keeps one](Projection::keeps_own_checkpoint)), and only then are the messages acked.
///
/// Idempotent by position: the relay publishes in log order, so a message at or before the
/// checkpoint (redelivered after a crash between commit and ack, or published again) was
/// handled, and is acked and skipped. That needs JetStream to deliver nothing past a
/// message that is still unacknowledged, so the consumer must be created with
/// [`AckPolicy::Explicit`] and a `max_ack_pending` of at least 1 and at most
/// [`MAX_ACK_PENDING`] (batches are then at least that large, so each batch takes every
/// message JetStream lets out): after a crash, nothing new comes until the unacknowledged
/// messages are redelivered (after the consumer's `ack_wait`), in order. Another
/// configuration is refused on the first batch with [`ConsumeError::Config`]. Several
/// `Consumer`s may share a durable consumer (they take turns) if they share the checkpoint.
///
/// A message that cannot be read, or an event the projection fails on, stops the consumer
/// with a [`ConsumeError`]: the events before it in its batch are committed and acked (for
/// a projection that keeps its own checkpoint, the batch is rolled back instead), and the
/// rest are handed back to JetStream (`nak`), which delivers them again.
///
/// ```no_run
/// # async fn example(store: es_memory::MemoryEventStore, projection: impl es_core::Projection) -> Result<(), Box<dyn std::error::Error>> {
/// use async_nats::jetstream::consumer::{AckPolicy, pull};
///
/// let jetstream = async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
/// let consumer = jetstream
///     .get_stream("ES_EVENTS")
///     .await?
///     .get_or_create_consumer(
///         "surveys",
///         pull::Config {
///             durable_name: Some("surveys".into()),
///             filter_subject: "applications.*".into(),
///             ack_policy: AckPolicy::Explicit,
///             max_ack_pending: 256,
///             ..Default::default()
///         },
///     )
///     .await?;
/// let mut consumer = es_nats::Consumer::new(consumer, projection, store);
/// let handled = consumer.catch_up().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer<P, C> {
    consumer: PullConsumer,
    projection: P,
    checkpoints: C,
    batch_size: usize,
    wait: Duration,
    checkpoint: Option<Option<Position>>,
    verified: bool,
}

/// The largest `max_ack_pending` a [`Consumer`]'s durable consumer may have: a batch holds
/// that many messages in memory.
pub const MAX_ACK_PENDING: i64 = 10_000;

impl<P, C> Consumer<P, C>
where
    P: Projection,
    C: CheckpointStore,
{
    /// Feeds `projection` from `consumer`, keeping the checkpoint in `checkpoints` under the
    /// projection's name (unless the projection keeps its own).
    pub fn new(consumer: PullConsumer, projection: P, checkpoints: C) -> Self {
        Self {
            consumer,
            projection,
            checkpoints,
            batch_size: 256,
            wait: Duration::from_secs(1),
            checkpoint: None,
            verified: false,
        }
    }

    /// At least `messages` per batch (and per commit); a batch is never smaller than the
    /// consumer's `max_ack_pending`. Default 256.
    #[must_use]
    pub fn with_batch_size(mut self, messages: usize) -> Self {
        self.batch_size = messages.max(1);
        self
    }

    /// How long a fetch waits for messages (in [`run`](Consumer::run)) or for JetStream's
    /// answer (in [`catch_up`](Consumer::catch_up)). Default 1 s.
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.max(Duration::from_millis(10));
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The projection, to change.
    pub fn projection_mut(&mut self) -> &mut P {
        &mut self.projection
    }

    /// The projection, giving up the consumer.
    pub fn into_projection(self) -> P {
        self.projection
    }

    /// Handles every message the consumer lets out now, and returns how many events the
    /// projection handled (skipped ones not counted). Messages still unacknowledged by an
    /// earlier, crashed consumer come only once JetStream redelivers them.
    ///
    /// # Errors
    ///
    /// A [`ConsumeError`]; see the type's docs for what becomes of the batch.
    pub async fn catch_up(&mut self) -> Result<u64, ConsumeError<P::Error>> {
        let mut handled = 0;
        loop {
            match self.batch(false).await? {
                None => return Ok(handled),
                Some(count) => handled += count,
            }
        }
    }

    /// Handles messages as they come until `shutdown` completes. Shutdown is seen between
    /// batches (each fetch waits at most [`with_wait`](Consumer::with_wait)), never in the
    /// middle of one, so no delivered message is left unanswered.
    ///
    /// # Errors
    ///
    /// As [`catch_up`](Consumer::catch_up).
    pub async fn run(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ConsumeError<P::Error>> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
                return Ok(());
            }
            self.batch(true).await?;
        }
    }

    /// Checks, once, that the durable consumer delivers nothing past an unacknowledged
    /// message, and sizes batches to take all it lets out.
    async fn verify(&mut self) -> Result<(), ConsumeError<P::Error>> {
        if self.verified {
            return Ok(());
        }
        let info = self
            .consumer
            .info()
            .await
            .map_err(|error| ConsumeError::JetStream(Box::new(error)))?;
        let config = &info.config;
        let name = config
            .durable_name
            .clone()
            .unwrap_or_else(|| info.name.clone());
        if config.ack_policy != AckPolicy::Explicit {
            return Err(ConsumeError::Config {
                consumer: name,
                reason: format!(
                    "its ack policy is {:?}; it must be explicit",
                    config.ack_policy
                ),
            });
        }
        if !(1..=MAX_ACK_PENDING).contains(&config.max_ack_pending) {
            return Err(ConsumeError::Config {
                consumer: name,
                reason: format!(
                    "its max_ack_pending is {}; it must be from 1 to {MAX_ACK_PENDING}, so that \
                     nothing is delivered past a message still unacknowledged",
                    config.max_ack_pending
                ),
            });
        }
        self.batch_size = self
            .batch_size
            .max(usize::try_from(config.max_ack_pending).unwrap_or(self.batch_size));
        self.verified = true;
        Ok(())
    }

    /// One batch: `None` if the consumer had nothing (waiting up to `wait` for it when
    /// `wait` is set), otherwise how many events the projection handled.
    async fn batch(&mut self, wait: bool) -> Result<Option<u64>, ConsumeError<P::Error>> {
        let jetstream =
            |error: Box<dyn std::error::Error + Send + Sync>| ConsumeError::JetStream(error);
        self.verify().await?;
        let fetched = if wait {
            self.consumer
                .batch()
                .max_messages(self.batch_size)
                .expires(self.wait)
                .messages()
                .await
        } else {
            // No waiting for messages, but a deadline for JetStream's answer.
            self.consumer
                .fetch()
                .max_messages(self.batch_size)
                .expires(self.wait)
                .messages()
                .await
        }
        .map_err(|error| jetstream(Box::new(error)))?;
        let mut messages = Vec::new();
        let mut fetched = std::pin::pin!(fetched);
        while let Some(message) = fetched.next().await {
            messages.push(message.map_err(jetstream)?);
        }
        if messages.is_empty() {
            return Ok(None);
        }
        let checkpoint = self.checkpoint().await?;
        let filter = self.projection.filter();
        let (mut handled, mut last, mut done) = (0, None, 0);
        let mut failure = None;
        for message in &messages {
            match self.handle(message, checkpoint, &filter).await {
                Ok(Some(position)) => {
                    handled += 1;
                    last = Some(position);
                }
                Ok(None) => {}
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
            done += 1;
        }
        if let Some(error) = failure {
            let kept = if self.projection.keeps_own_checkpoint() {
                // Its writes and checkpoint go together: the batch goes back whole.
                let _ = self.projection.rollback().await;
                self.checkpoint = None;
                0
            } else {
                // What was handled before the failure is done: keep it, so it is not
                // applied again when the rest comes back.
                match last {
                    Some(position) => {
                        self.commit(position).await?;
                        done
                    }
                    None => done,
                }
            };
            for message in &messages[..kept] {
                message.ack().await.map_err(jetstream)?;
            }
            for message in &messages[kept..] {
                let _ = message.ack_with(AckKind::Nak(None)).await;
            }
            return Err(error);
        }
        if let Some(position) = last {
            self.commit(position).await?;
        }
        for message in &messages {
            message.ack().await.map_err(jetstream)?;
        }
        Ok(Some(handled))
    }

    /// Handles one message: `Some(position)` if the projection handled its event, `None`
    /// if it was skipped (handled before, or not selected).
    async fn handle(
        &mut self,
        message: &async_nats::jetstream::Message,
        checkpoint: Option<Position>,
        filter: &EventFilter,
    ) -> Result<Option<Position>, ConsumeError<P::Error>> {
        let described = Described::read(message.subject.as_str(), message.headers.as_ref())?;
        let selected = checkpoint.is_none_or(|at| described.position > at)
            && filter.matches(&described.stream_id, &described.event_type);
        if !selected {
            return Ok(None);
        }
        let envelope = message::decode::<P::Event>(message)?;
        // Continues the trace of the command that recorded the event (feature
        // `opentelemetry`).
        let span = es_core::telemetry::handle_span(self.projection.name(), &envelope);
        self.projection
            .handle(&envelope)
            .instrument(span)
            .await
            .map_err(|source| ConsumeError::Projection {
                stream: envelope.stream_id.clone(),
                version: envelope.version,
                source,
            })?;
        Ok(Some(envelope.position))
    }

    /// The checkpoint, loaded once and then kept as committed.
    async fn checkpoint(&mut self) -> Result<Option<Position>, ConsumeError<P::Error>> {
        if let Some(checkpoint) = self.checkpoint {
            return Ok(checkpoint);
        }
        let name = self.projection.name().to_owned();
        let loaded = if self.projection.keeps_own_checkpoint() {
            self.projection
                .load_checkpoint(&name)
                .await
                .map_err(ConsumeError::Resume)?
        } else {
            self.checkpoints
                .load_checkpoint(&name)
                .await
                .map_err(ConsumeError::Checkpoint)?
        };
        self.checkpoint = Some(loaded);
        Ok(loaded)
    }

    async fn commit(&mut self, position: Position) -> Result<(), ConsumeError<P::Error>> {
        let name = self.projection.name().to_owned();
        let committed = self.projection.commit(&name, position).await;
        if let Err(error) = committed {
            let _ = self.projection.rollback().await;
            self.checkpoint = None;
            return Err(ConsumeError::Commit(error));
        }
        if !self.projection.keeps_own_checkpoint() {
            self.checkpoints
                .save_checkpoint(&name, position)
                .await
                .map_err(|error| {
                    self.checkpoint = None;
                    ConsumeError::Checkpoint(error)
                })?;
        }
        self.checkpoint = Some(Some(position));
        Ok(())
    }
}
