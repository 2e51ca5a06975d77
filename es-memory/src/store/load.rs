//! [`SnapshotStore::load_events`](es_core::SnapshotStore::load_events) for the memory store:
//! what an aggregate load reads, without envelopes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use es_core::{DomainEvent, LoadItem, LoadStart, ReadError, StreamId, Version};
use futures_core::Stream;

use super::{MemoryEventStore, PAGE, Shared, State};
use crate::record::Record;

impl MemoryEventStore {
    /// The load of `stream` after `after`: its start (archived or not, the snapshot past
    /// `after` if asked for) and the first page of events, read under one lock so that
    /// they agree, then the later pages.
    pub(super) fn loader<E: DomainEvent>(
        &self,
        stream: &StreamId,
        after: Version,
        snapshot: bool,
    ) -> Loader<E> {
        let state = self.shared.read();
        let snapshot = if snapshot {
            state
                .snapshots
                .get(stream)
                .filter(|snapshot| snapshot.version > after)
                .cloned()
        } else {
            None
        };
        let from = snapshot.as_ref().map_or(after, |s| s.version).next();
        let start = LoadStart::new(snapshot, state.archived.contains(stream));
        let mut loader = Loader {
            shared: Arc::clone(&self.shared),
            start: Some(start),
            stream: stream.clone(),
            next: from,
            buffer: VecDeque::new(),
            finished: false,
        };
        loader.fill(&state);
        drop(state);
        loader
    }
}

/// Hands out a load's start, then its events as [`LoadItem::Event`]s: the typed event
/// cloned (or decoded, as for an envelope), with none of an envelope's stream id,
/// metadata or recorded time, which a fold does not look at.
pub(super) struct Loader<E> {
    shared: Arc<Shared>,
    start: Option<LoadStart>,
    stream: StreamId,
    /// The version of the next event to take from the store.
    next: Version,
    buffer: VecDeque<Pending<E>>,
    finished: bool,
}

/// A load's next event: cloned while the page is taken, when the store keeps it as an `E`
/// (the usual case; a clone is user code too, but one that copies data); else its record,
/// decoded once the lock is let go, since a decode (serde, upcasters) may take its time.
enum Pending<E> {
    Event(LoadItem<E>),
    Record(Arc<Record>),
}

impl<E: DomainEvent> Loader<E> {
    /// Takes the next page of the stream's events into the buffer. Cloning them here
    /// rather than sharing their records leaves the fold a run of events side by side,
    /// instead of a record to reach (and count a reference on) for each. The price: the
    /// read lock is held for a page of clones rather than of reference counts, which for
    /// large events keeps a writer waiting longer (a page is at most `PAGE` events).
    fn fill(&mut self, state: &State) {
        let page = state.stream_page(&self.stream, self.next);
        self.buffer.reserve(page.len());
        self.buffer
            .extend(page.iter().map(|record| match record.typed::<E>() {
                Some(event) => Pending::Event(load_item(record, event.clone())),
                None => Pending::Record(Arc::clone(record)),
            }));
        self.next = Version::new(self.next.get() + page.len() as u64);
        // A short page is the stream's end as the load found it: no second look under
        // the lock for what was appended since (a load is of the stream as it stood;
        // one of more than a page goes on reading as later pages are taken).
        self.finished = page.len() < PAGE;
    }
}

/// `event`, read from `record`, as a load hands it out.
fn load_item<E>(record: &Record, event: E) -> LoadItem<E> {
    LoadItem::Event {
        version: record.version,
        event_id: record.event_id,
        position: record.position,
        event,
    }
}

// Nothing in a loader is pinned: its poll moves what it hands out.
impl<E> Unpin for Loader<E> {}

impl<E: DomainEvent> Stream for Loader<E> {
    type Item = Result<LoadItem<E>, ReadError>;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // `Unpin` by the impl above (nothing is pinned), and nothing here waits: each poll
        // is ready.
        let this = self.get_mut();
        if let Some(start) = this.start.take() {
            return Poll::Ready(Some(Ok(LoadItem::Start(start))));
        }
        loop {
            match this.buffer.pop_front() {
                Some(Pending::Event(item)) => return Poll::Ready(Some(Ok(item))),
                Some(Pending::Record(record)) => {
                    let item = record.event::<E>().map(|event| load_item(&record, event));
                    // A stream of results ends at its first error.
                    if item.is_err() {
                        this.finished = true;
                        this.buffer.clear();
                    }
                    return Poll::Ready(Some(item));
                }
                None if this.finished => return Poll::Ready(None),
                None => {
                    let shared = Arc::clone(&this.shared);
                    this.fill(&shared.read());
                }
            }
        }
    }
}
