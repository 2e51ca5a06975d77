//! [`SnapshotStore::load_events`](es_core::SnapshotStore::load_events) for the memory store:
//! what an aggregate load reads, without envelopes.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use es_core::{DomainEvent, LoadItem, LoadStart, ReadError, StreamId, Version};
use futures_core::Stream;

use super::{Cursor, MemoryEventStore, Shared};
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
        let mut cursor = Cursor::Stream {
            stream: stream.clone(),
            next: from,
        };
        let mut buffer = VecDeque::new();
        state.page(&mut cursor, &mut buffer);
        drop(state);
        Loader {
            shared: Arc::clone(&self.shared),
            start: Some(start),
            cursor,
            buffer,
            finished: false,
            event: PhantomData,
        }
    }
}

/// Hands out a load's start, then its events as [`LoadItem::Event`]s: the typed event
/// cloned (or decoded, as for an envelope), with none of an envelope's stream id,
/// metadata or recorded time, which a fold does not look at.
pub(super) struct Loader<E> {
    shared: Arc<Shared>,
    start: Option<LoadStart>,
    cursor: Cursor,
    buffer: VecDeque<Arc<Record>>,
    finished: bool,
    event: PhantomData<fn() -> E>,
}

impl<E: DomainEvent> Stream for Loader<E> {
    type Item = Result<LoadItem<E>, ReadError>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is `Unpin`, and nothing here waits: each poll is ready.
        let this = &mut *self;
        if let Some(start) = this.start.take() {
            return Poll::Ready(Some(Ok(LoadItem::Start(start))));
        }
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            if let Some(record) = this.buffer.pop_front() {
                let item = record.event::<E>().map(|event| LoadItem::Event {
                    version: record.version,
                    event_id: record.event_id,
                    position: record.position,
                    event,
                });
                // A stream of results ends at its first error.
                this.finished = item.is_err();
                return Poll::Ready(Some(item));
            }
            this.shared.read().page(&mut this.cursor, &mut this.buffer);
            this.finished = this.buffer.is_empty();
        }
    }
}
