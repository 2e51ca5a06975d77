//! Another service's side: a [`Projection`] (or a process manager, through
//! [`ProcessManagerProjection`](es_core::ProcessManagerProjection)) fed by a durable
//! JetStream consumer, [`Consumer`].

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use es_core::{CheckpointStore, EventFilter, Position, Projection};
use futures_util::StreamExt as _;

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
/// handled, and is acked and skipped. A message that cannot be read, or an event the
/// projection fails on, stops the consumer with a [`ConsumeError`]; its batch is rolled
/// back and left unacknowledged, so JetStream delivers it again.
///
/// ```no_run
/// # async fn example(store: es_memory::MemoryEventStore, projection: impl es_core::Projection) -> Result<(), Box<dyn std::error::Error>> {
/// use async_nats::jetstream::consumer::pull;
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
}

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
        }
    }

    /// At most `messages` per batch (and per commit). Default 256.
    #[must_use]
    pub fn with_batch_size(mut self, messages: usize) -> Self {
        self.batch_size = messages.max(1);
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Handles every message the consumer has now, and returns how many events the
    /// projection handled (skipped ones not counted).
    ///
    /// # Errors
    ///
    /// A [`ConsumeError`]; the batch it happened in is rolled back and redelivered later.
    pub async fn catch_up(&mut self) -> Result<u64, ConsumeError<P::Error>> {
        let mut handled = 0;
        loop {
            match self.batch(false).await? {
                None => return Ok(handled),
                Some(count) => handled += count,
            }
        }
    }

    /// Handles messages as they come until `shutdown` completes.
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
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                batch = self.batch(true) => { batch?; }
            }
        }
    }

    /// One batch: `None` if the consumer had nothing (waiting up to `wait` for it when
    /// `wait` is set), otherwise how many events the projection handled.
    async fn batch(&mut self, wait: bool) -> Result<Option<u64>, ConsumeError<P::Error>> {
        let jetstream =
            |error: Box<dyn std::error::Error + Send + Sync>| ConsumeError::JetStream(error);
        let fetched = if wait {
            self.consumer
                .batch()
                .max_messages(self.batch_size)
                .expires(self.wait)
                .messages()
                .await
        } else {
            self.consumer
                .fetch()
                .max_messages(self.batch_size)
                .messages()
                .await
        }
        .map_err(|error| jetstream(Box::new(error)))?;
        let messages: Vec<_> = fetched.collect().await;
        if messages.is_empty() {
            return Ok(None);
        }
        let checkpoint = self.checkpoint().await?;
        let filter = self.projection.filter();
        let mut acks = Vec::with_capacity(messages.len());
        let mut last = None;
        let mut handled = 0;
        let outcome: Result<(), ConsumeError<P::Error>> = async {
            for message in messages {
                let message = message.map_err(jetstream)?;
                let described =
                    Described::read(message.subject.as_str(), message.headers.as_ref())?;
                let selected = checkpoint.is_none_or(|at| described.position > at)
                    && selects(
                        &filter,
                        described.stream_id.category(),
                        &described.event_type,
                    );
                if selected {
                    let envelope = message::decode::<P::Event>(&message)?;
                    self.projection.handle(&envelope).await.map_err(|source| {
                        ConsumeError::Projection {
                            stream: envelope.stream_id.clone(),
                            version: envelope.version,
                            source,
                        }
                    })?;
                    handled += 1;
                    last = Some(envelope.position);
                }
                acks.push(message);
            }
            Ok(())
        }
        .await;
        if let Err(error) = outcome {
            // Nothing of this batch is acknowledged: it comes again, and the checkpoint is
            // read again then.
            let _ = self.projection.rollback().await;
            self.checkpoint = None;
            return Err(error);
        }
        if let Some(position) = last {
            self.commit(position).await?;
        }
        for message in acks {
            message.ack().await.map_err(ConsumeError::JetStream)?;
        }
        Ok(Some(handled))
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
                .map_err(ConsumeError::Commit)?
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

/// Whether `filter` selects an event of `event_type` in `category` (partitions and archive
/// state are the store's business, not a consumer's).
fn selects(filter: &EventFilter, category: &str, event_type: &str) -> bool {
    filter
        .categories()
        .is_none_or(|categories| categories.iter().any(|c| c == category))
        && filter
            .event_types()
            .is_none_or(|types| types.iter().any(|t| t == event_type))
}
