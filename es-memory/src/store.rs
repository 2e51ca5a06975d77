//! [`MemoryEventStore`]: the log, the stream index, and their readers.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::{Future, ready};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use chrono::Utc;
use es_core::{
    AppendCondition, AppendError, Committed, DomainEvent, EventEnvelope, EventFilter, EventStore,
    ExpectedVersion, NewEvent, ParkedEvent, Position, ReadError, Snapshot, StoreError, StreamId,
    Version,
};
use futures_core::Stream;
use tokio::sync::watch;
use uuid::Uuid;

use crate::record::{Record, type_name};

mod load;
mod tables;

/// How many records a reader copies out per lock acquisition: large enough that locking is
/// rare, small enough that a reader holds the lock for a bounded time (a load clones this
/// many events under it).
const PAGE: usize = 512;

/// An in-memory event store, shared by all its clones.
///
/// Safe under any number of concurrent writers and readers: an append checks the expected
/// version and writes the whole batch under one lock, and readers copy records out in
/// pages, so neither waits on the other for long. Subscribers are woken by the append
/// itself.
#[derive(Clone, Default)]
pub struct MemoryEventStore {
    shared: Arc<Shared>,
}

struct Shared {
    state: RwLock<State>,
    /// Whether events are read back through their encoding every time.
    strict: bool,
    /// The number of events in the log, published after every append so that live
    /// subscribers wake up.
    head: watch::Sender<u64>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            state: RwLock::new(State::default()),
            strict: false,
            head: watch::Sender::new(0),
        }
    }
}

#[derive(Default)]
struct State {
    /// The global log; the record at index `i` has sequence number `i + 1`.
    log: Vec<Arc<Record>>,
    /// Each stream's records, by version (index `v - 1`).
    streams: HashMap<StreamId, Vec<Arc<Record>>>,
    /// Where each event id is: its log index.
    ids: HashMap<Uuid, usize>,
    /// Appends so far: the major part of positions.
    batches: u64,
    snapshots: HashMap<StreamId, Snapshot>,
    checkpoints: HashMap<String, Position>,
    /// Parked events by projection, then event id.
    parked: HashMap<String, HashMap<Uuid, ParkedEvent>>,
    /// Holder and expiry of each lease; no expiry for a TTL past what `Instant` can
    /// count, which would never run out anyway.
    leases: HashMap<String, (Uuid, Option<Instant>)>,
    /// Archived streams.
    archived: HashSet<StreamId>,
}

impl fmt::Debug for MemoryEventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.read();
        f.debug_struct("MemoryEventStore")
            .field("strict", &self.shared.strict)
            .field("events", &state.log.len())
            .field("streams", &state.streams.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    // The only user code run while the lock is held is an event's `Clone`, under the read
    // lock of a load (load.rs), where a panic does not poison; appends clone and encode
    // before taking the write lock, and reads decode after. So a poisoned lock can only
    // follow a panic inside this crate's own bookkeeping; the data is still consistent at
    // every await-free step, so recover it.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryEventStore {
    /// An empty store.
    ///
    /// Events are encoded when appended (so an event that cannot be encoded is refused, as
    /// a database would refuse it) but kept typed: reading them back as the type that wrote
    /// them is a clone. A field your serde attributes drop (`#[serde(skip)]`) therefore
    /// comes back as written here but not from a database; use [`MemoryEventStore::strict`]
    /// (or the test harness, which checks every event's round trip) to catch that.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that reads every event back through its JSON encoding, exactly as a
    /// database store does: slower, and faithful to what serialization keeps and drops.
    ///
    /// ```
    /// use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId, Version};
    /// use es_memory::MemoryEventStore;
    /// use futures_util::TryStreamExt;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, es_core::DomainEvent)]
    /// struct Noted {
    ///     text: String,
    ///     #[serde(skip)]
    ///     cached_len: usize,
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
    /// let store = MemoryEventStore::strict();
    /// let stream = StreamId::new("note", "1")?;
    /// let event = Noted { text: "hi".into(), cached_len: 2 };
    /// store.append(&stream, ExpectedVersion::Any, vec![NewEvent::new(event)]).await?;
    /// let read: Vec<_> = store.read_stream::<Noted>(&stream, Version::INITIAL).try_collect().await?;
    /// assert_eq!(read[0].event.cached_len, 0, "skipped fields do not survive storage");
    /// assert_eq!(read[0].event.text, "hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn strict() -> Self {
        Self {
            shared: Arc::new(Shared {
                strict: true,
                ..Shared::default()
            }),
        }
    }

    /// How many events the store holds, across all streams.
    pub fn len(&self) -> usize {
        self.shared.read().log.len()
    }

    /// Whether the store holds no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn append_now<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent<E>>,
        condition: Option<&AppendCondition>,
    ) -> Result<Committed<E>, AppendError> {
        // The append is done here, at once: the span covers it, not the ready future.
        let _span = tracing::debug_span!(
            es_core::telemetry::APPEND_SPAN,
            %stream,
            events = events.len(),
            %expected,
        )
        .entered();
        // Run every piece of user code (encode, decode, clone, event_type) before taking
        // the lock. The checks are the ones every store makes, so all refuse alike.
        let strict = self.shared.strict;
        let payloads = es_core::limits::encode_batch(stream, &mut events)?;
        let prepared: Vec<(Cow<'static, str>, u32, E, Option<serde_json::Value>)> = events
            .iter()
            .zip(payloads)
            .map(|(new, payload)| {
                let event = &new.event;
                (
                    type_name::<E>(event.event_type()),
                    event.schema_version(),
                    event.clone(),
                    strict.then_some(payload),
                )
            })
            .collect();
        let mut state = self.shared.write();
        // Taken under the lock, so that recorded times follow the log's order.
        let recorded_at = Utc::now();
        match state.find_stored(stream, &events)? {
            Stored::None => {}
            Stored::Repeat(records) => {
                drop(state);
                return repeat(stream, &records);
            }
        }
        if state.archived.contains(stream) {
            return Err(AppendError::Archived {
                stream: stream.clone(),
            });
        }
        let current = state.version_of(stream);
        if !expected.matches(current) {
            return Err(AppendError::Conflict {
                stream: stream.clone(),
                expected,
                actual: current,
            });
        }
        // Checked under the write lock that the append below takes too: nothing can be
        // stored between the check and the write.
        if let Some(condition) = condition
            && let Some(record) = state.first_failing(condition)
        {
            return Err(AppendError::ConditionFailed {
                stream: stream.clone(),
                query: condition.fail_if_events_match.to_string(),
                after: condition.after,
                position: record.position,
                event_type: record.event_type.to_string(),
            });
        }
        if events.is_empty() {
            return Ok(Committed {
                stream_id: stream.clone(),
                version: current,
                events: Vec::new(),
                duplicate: false,
            });
        }
        if current.get().saturating_add(events.len() as u64) > Version::MAX.get() {
            return Err(AppendError::StreamFull {
                stream: stream.clone(),
                version: current,
                events: events.len(),
            });
        }

        state.batches += 1;
        let batch = state.batches;
        let State {
            log, streams, ids, ..
        } = &mut *state;
        // Looked up again (not kept from `version_of`: the checks above may refuse the
        // append), but cloned only for a new stream.
        let stream_records = match streams.get_mut(stream) {
            Some(records) => records,
            None => streams.entry(stream.clone()).or_default(),
        };
        stream_records.reserve(events.len());
        let mut version = current;
        let mut envelopes = Vec::with_capacity(events.len());
        for (new, (event_type, schema_version, body, payload)) in events.into_iter().zip(prepared) {
            version = version.next();
            let sequence = log.len() as u64 + 1;
            let position = Position::from_parts(batch, sequence);
            let record: Arc<Record> = Arc::new(Record {
                event_id: new.event_id,
                stream_id: stream.clone(),
                version,
                position,
                recorded_at,
                metadata: new.metadata.clone(),
                event_type,
                schema_version,
                payload,
                body,
            });
            ids.insert(new.event_id, log.len());
            log.push(Arc::clone(&record));
            stream_records.push(record);
            envelopes.push(EventEnvelope {
                event_id: new.event_id,
                stream_id: stream.clone(),
                version,
                position,
                recorded_at,
                metadata: new.metadata,
                event: new.event,
            });
        }
        let head = log.len() as u64;
        drop(state);
        // Only a wake-up: no reader looks at the value, each pages the log itself. With no
        // live reader there is no one to wake (notifying costs eight locks). A reader that
        // subscribes after this check pages the log after it, under the lock this append
        // released, so it sees these events; one that subscribed before is counted here.
        if self.shared.head.receiver_count() > 0 {
            self.shared.head.send_replace(head);
        }

        Ok(Committed {
            stream_id: stream.clone(),
            version,
            events: envelopes,
            duplicate: false,
        })
    }

    fn reader<E: DomainEvent>(&self, cursor: Cursor, live: bool) -> Reader<E> {
        let span = match (&cursor, live) {
            (Cursor::Log { after, .. }, true) => Some(Box::new(tracing::debug_span!(
                es_core::telemetry::SUBSCRIPTION_SPAN,
                after
            ))),
            _ => None,
        };
        Reader {
            shared: Arc::clone(&self.shared),
            cursor,
            buffer: VecDeque::new(),
            live: live.then(|| Live::Idle(self.shared.head.subscribe())),
            span,
            finished: false,
            event: PhantomData,
        }
    }
}

impl State {
    /// The first stored event that makes `condition` fail, archived streams' included.
    fn first_failing(&self, condition: &AppendCondition) -> Option<&Arc<Record>> {
        if condition.fail_if_events_match.is_none() {
            return None;
        }
        // The log is in position order: skip what is not after the condition's position.
        let start = condition
            .after
            .map_or(0, |after| self.log.partition_point(|r| r.position <= after));
        self.log[start..].iter().find(|record| {
            condition
                .fail_if_events_match
                .matches(&record.event_type, &record.metadata.tags)
        })
    }

    fn version_of(&self, stream: &StreamId) -> Version {
        self.streams
            .get(stream)
            .map_or(Version::INITIAL, |records| {
                Version::new(records.len() as u64)
            })
    }

    /// Applies the idempotency rule: [`Stored::Repeat`] when the whole batch is already
    /// stored in this stream as one run, an error when it partly is (or is elsewhere),
    /// [`Stored::None`] when none of it is.
    fn find_stored<E>(
        &self,
        stream: &StreamId,
        events: &[NewEvent<E>],
    ) -> Result<Stored, AppendError> {
        // Ids repeated within the batch were refused before (`encode_batch`).
        let mut stored: Vec<Arc<Record>> = Vec::new();
        for event in events {
            if let Some(record) = self.ids.get(&event.event_id).and_then(|&i| self.log.get(i)) {
                stored.push(Arc::clone(record));
            }
        }
        let Some(first) = stored.first() else {
            return Ok(Stored::None);
        };
        let is_repeat = stored.len() == events.len()
            && stored.iter().enumerate().all(|(i, record)| {
                &record.stream_id == stream
                    && record.version.get() == first.version.get() + i as u64
            });
        if is_repeat {
            return Ok(Stored::Repeat(stored));
        }
        let clash = stored
            .iter()
            .find(|r| &r.stream_id != stream)
            .unwrap_or(first);
        Err(AppendError::DuplicateEventId {
            event_id: clash.event_id,
            stream: stream.clone(),
            existing_stream: clash.stream_id.clone(),
            existing_version: clash.version,
        })
    }

    /// Whether a read of the log with `filter` returns `record`.
    fn selects(&self, filter: &EventFilter, record: &Record) -> bool {
        filter.matches(&record.stream_id, &record.event_type)
            && (filter.includes_archived()
                || self.archived.is_empty()
                || !self.archived.contains(&record.stream_id))
    }

    /// The records of `stream` from version `next` on, a page of them at most.
    fn stream_page(&self, stream: &StreamId, next: Version) -> &[Arc<Record>] {
        let Some(records) = self.streams.get(stream) else {
            return &[];
        };
        let start = usize::try_from(next.get().saturating_sub(1)).unwrap_or(usize::MAX);
        let page = records.get(start..).unwrap_or_default();
        &page[..page.len().min(PAGE)]
    }

    /// Copies the next page of records after `cursor` into `out`, advancing the cursor.
    fn page(&self, cursor: &mut Cursor, out: &mut VecDeque<Arc<Record>>) {
        match cursor {
            Cursor::Stream { stream, next } => {
                let page = self.stream_page(stream, *next);
                let before = out.len();
                // One allocation for the page, not one per doubling.
                out.reserve(page.len());
                out.extend(page.iter().cloned());
                *next = Version::new(next.get() + (out.len() - before) as u64);
            }
            Cursor::Log { after, filter } => {
                let start = usize::try_from(*after).unwrap_or(usize::MAX);
                let mut scanned = 0;
                for record in self.log.iter().skip(start) {
                    scanned += 1;
                    if self.selects(filter, record) {
                        out.push_back(Arc::clone(record));
                        if out.len() >= PAGE {
                            break;
                        }
                    }
                    if scanned >= PAGE * 8 {
                        break;
                    }
                }
                *after += scanned as u64;
            }
        }
    }
}

/// What the store already holds of a batch.
enum Stored {
    /// None of it.
    None,
    /// All of it, as one run in the stream appended to.
    Repeat(Vec<Arc<Record>>),
}

/// The outcome of repeating an append: the stored events, read back.
fn repeat<E: DomainEvent>(
    stream: &StreamId,
    records: &[Arc<Record>],
) -> Result<Committed<E>, AppendError> {
    let events = records
        .iter()
        .map(|record| record.envelope::<E>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| AppendError::Store {
            stream: stream.clone(),
            source: StoreError::new("idempotent append", error),
        })?;
    Ok(Committed {
        stream_id: stream.clone(),
        version: records.last().map_or(Version::INITIAL, |r| r.version),
        events,
        duplicate: true,
    })
}

/// Where a reader is.
enum Cursor {
    /// In one stream, at the next version to read.
    Stream { stream: StreamId, next: Version },
    /// In the global log, after this many events, keeping those the filter selects.
    Log { after: u64, filter: EventFilter },
}

/// Reads pages of records and hands them out as envelopes; when `live`, waits for appends
/// at the end of the log instead of ending.
///
/// A hand-written [`Stream`] rather than an `async` block unfolded: handing out a buffered
/// event is then a plain function call that moves the envelope once, instead of moving the
/// reader into and out of a new future for every event (a third of a rehydration's time).
struct Reader<E> {
    shared: Arc<Shared>,
    cursor: Cursor,
    buffer: VecDeque<Arc<Record>>,
    live: Option<Live>,
    /// The subscription's span (`es.subscription`, debug), for its wake-ups; none for a
    /// read of history.
    span: Option<Box<tracing::Span>>,
    finished: bool,
    event: PhantomData<fn() -> E>,
}

/// A live reader's wait for appends: idle between waits, or waiting, the receiver then
/// held by the boxed wait (made once per wait, never per event).
enum Live {
    Idle(watch::Receiver<u64>),
    Waiting(Pin<Box<dyn Future<Output = Woken> + Send + Sync>>),
}

/// The receiver back from a wait, and whether the store is still there to append.
type Woken = (watch::Receiver<u64>, Result<(), watch::error::RecvError>);

impl<E: DomainEvent> Stream for Reader<E> {
    type Item = Result<EventEnvelope<E>, ReadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is `Unpin`: the reader is moved freely, never pinned in place.
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            if let Some(record) = this.buffer.pop_front() {
                let envelope = record.envelope::<E>();
                // A stream of results ends at its first error.
                this.finished = envelope.is_err();
                return Poll::Ready(Some(envelope));
            }
            if let Some(Live::Waiting(wait)) = &mut this.live {
                let (receiver, woken) = ready!(wait.as_mut().poll(cx));
                this.live = Some(Live::Idle(receiver));
                if woken.is_err() {
                    this.finished = true;
                    return Poll::Ready(None);
                }
                if let Some(span) = &this.span {
                    tracing::trace!(parent: &**span, "woken by an append");
                }
            }
            this.shared.read().page(&mut this.cursor, &mut this.buffer);
            if !this.buffer.is_empty() {
                continue;
            }
            if let Cursor::Log { after, .. } = this.cursor {
                // Paging scans a bounded number of records; go on if the log holds more.
                if after < this.shared.read().log.len() as u64 {
                    continue;
                }
            }
            let Some(Live::Idle(mut receiver)) = this.live.take() else {
                // Not live: the end of what is stored. (A wait in progress was polled
                // above and is idle again by now.) Ended for good: polled again, it must
                // not hand out what was appended since.
                this.finished = true;
                return Poll::Ready(None);
            };
            // `changed` resolves at once if an append happened since this receiver last
            // looked, so an append between the page above and this wait is not missed.
            this.live = Some(Live::Waiting(Box::pin(async move {
                let woken = receiver.changed().await;
                (receiver, woken)
            })));
        }
    }
}

impl EventStore for MemoryEventStore {
    fn append<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
    ) -> impl Future<Output = Result<Committed<E>, AppendError>> + Send {
        ready(self.append_now(stream, expected, events, None))
    }

    fn append_if<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
        condition: AppendCondition,
    ) -> impl Future<Output = Result<Committed<E>, AppendError>> + Send {
        ready(self.append_now(stream, expected, events, Some(&condition)))
    }

    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Version, ReadError>> + Send {
        ready(Ok(self.shared.read().version_of(stream)))
    }

    fn read_stream<E: DomainEvent>(
        &self,
        stream: &StreamId,
        from: Version,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        let cursor = Cursor::Stream {
            stream: stream.clone(),
            next: from.max(Version::new(1)),
        };
        self.reader::<E>(cursor, false)
    }

    fn read_all<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        let cursor = Cursor::Log {
            after: after.parts().1,
            filter,
        };
        self.reader::<E>(cursor, false)
    }

    fn subscribe<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        let cursor = Cursor::Log {
            after: after.parts().1,
            filter,
        };
        self.reader::<E>(cursor, true)
    }

    fn head(&self) -> impl Future<Output = Result<Option<Position>, ReadError>> + Send {
        ready(Ok(self
            .shared
            .read()
            .log
            .last()
            .map(|record| record.position)))
    }

    fn count_after(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Future<Output = Result<u64, ReadError>> + Send {
        let state = self.shared.read();
        let start = usize::try_from(after.parts().1).unwrap_or(usize::MAX);
        let count = state
            .log
            .iter()
            .skip(start)
            .filter(|record| state.selects(&filter, record))
            .count();
        ready(Ok(count as u64))
    }

    fn archive_stream(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.shared.write().archived.insert(stream.clone());
        ready(Ok(()))
    }

    fn is_archived(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<bool, ReadError>> + Send {
        ready(Ok(self.shared.read().archived.contains(stream)))
    }

    fn find_event<E: DomainEvent>(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<EventEnvelope<E>>, ReadError>> + Send {
        let record = {
            let state = self.shared.read();
            state
                .ids
                .get(&event_id)
                .and_then(|&index| state.log.get(index))
                .map(Arc::clone)
        };
        ready(record.map(|record| record.envelope::<E>()).transpose())
    }
}
