//! Reading one stream forwards: its events as envelopes (`EventStore::read_stream`), or an
//! aggregate's load (`SnapshotStore::load_events`), a page at a time, the next page
//! fetched while the caller works through the current one.

use std::collections::VecDeque;
use std::sync::Arc;

use es_core::{DomainEvent, EventEnvelope, LoadItem, ReadError, StoreError, StreamId, Version};
use futures_core::Stream;
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::checkout::Checkout;
use crate::error::{SERIALIZATION_RETRIES, is_serialization_failure, store_error};
use crate::inner::Inner;
use crate::reader::next_row;
use crate::row;

#[cfg(test)]
mod faults;
#[cfg(test)]
mod tests;

/// What the background query of a stream read hands over.
enum Delivery {
    /// Rows in order, up to [`CHUNK`] of them: one hand-over (one wake-up of the reader)
    /// for many rows, which a profile of rehydration showed as its largest cost when each
    /// row was its own.
    Rows(Vec<PgRow>),
    Failed(sqlx::Error),
    /// The stream's end: without it, a closed channel means the query was cut short.
    End,
}

/// How many rows a hand-over holds at most. Small against a page, so that the reader
/// decodes the first rows of a page while the server is still sending the rest, instead of
/// waiting for the whole page; large enough that hand-overs cost little beside decoding.
const CHUNK: usize = 128;

/// Reads one stream forwards.
///
/// A background task queries the stream a page at a time and passes the rows on through a
/// bounded channel, a chunk of rows at a time as they arrive, so that this side decodes
/// while the server sends. Before each page it reserves room for everything the page can
/// hand over: a query never waits on a slow reader, so no connection is held while the
/// reader works through its rows, and memory is bounded by about two pages. Dropping the
/// reader ends the task.
pub(crate) struct StreamReader<T> {
    inner: Arc<Inner>,
    stream: StreamId,
    from: Version,
    pages: Pages,
    /// Reads a row into an item.
    decode: fn(&PgRow, &StreamId) -> Result<T, ReadError>,
    rows: Option<mpsc::Receiver<Delivery>>,
    /// The rest of the chunk being read.
    chunk: VecDeque<PgRow>,
    task: Option<JoinHandle<()>>,
    finished: bool,
}

/// What a stream reader's pages select.
#[derive(Debug, Clone, Copy)]
enum Pages {
    /// Whole events (`read_stream_page.sql`).
    Envelopes,
    /// An aggregate's load (`SnapshotStore::load_events`): a first page that starts with
    /// the stream's snapshot and archive state (`load_start.sql`), then lean pages
    /// (`load_page.sql`).
    Load { after: Version, snapshot: bool },
}

/// How many hand-overs a page of `rows` rows needs, with one for its end or failure.
fn hand_overs(rows: usize) -> usize {
    rows.div_ceil(CHUNK) + 1
}

/// Hands `delivery` over in one of the page's reserved slots; false if no slot was left
/// and the reader is gone (a reader that goes away aborts the task anyway).
///
/// The slots are counted for everything a page hands over, so one is always left (debug
/// builds check it). Were they ever short, the delivery would wait for room, holding the
/// page's connection meanwhile, rather than be dropped: a reader that missed rows, or a
/// failure, would be silently wrong.
async fn hand_over(
    slots: &mut mpsc::PermitIterator<'_, Delivery>,
    sink: &mpsc::Sender<Delivery>,
    delivery: Delivery,
) -> bool {
    match slots.next() {
        Some(slot) => {
            slot.send(delivery);
            true
        }
        None => {
            debug_assert!(
                sink.is_closed(),
                "a page handed over more than its reserved slots"
            );
            sink.send(delivery).await.is_ok()
        }
    }
}

impl<T> Drop for StreamReader<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Queries the stream page after page, handing its rows over in chunks, until it ends or
/// the reader goes away.
async fn forward_stream(
    inner: Arc<Inner>,
    stream: StreamId,
    mut next: Version,
    pages: Pages,
    sink: mpsc::Sender<Delivery>,
) {
    let page = usize::try_from(inner.page_size).unwrap_or(1_000);
    let mut aborted = 0;
    // Whether the load's start row was handed over: a load's first page is the start row
    // and up to a page of events.
    let mut started = matches!(pages, Pages::Envelopes);
    loop {
        let rows_wanted = page + usize::from(!started);
        let Ok(mut slots) = sink.reserve_many(hand_overs(rows_wanted)).await else {
            return;
        };
        let mut checkout = match Checkout::take(&inner.pool).await {
            Ok(checkout) => checkout,
            Err(error) => {
                hand_over(&mut slots, &sink, Delivery::Failed(error)).await;
                return;
            }
        };
        let from = i64::try_from(next.get()).unwrap_or(i64::MAX);
        let query = match pages {
            Pages::Envelopes => sqlx::query(inner.sql.read_stream_page.clone())
                .bind(stream.as_str())
                .bind(from),
            Pages::Load { after, snapshot } if !started => {
                sqlx::query(inner.sql.load_start.clone())
                    .bind(stream.as_str())
                    .bind(i64::try_from(after.get()).unwrap_or(i64::MAX))
                    .bind(snapshot)
            }
            Pages::Load { .. } => sqlx::query(inner.sql.load_page.clone())
                .bind(stream.as_str())
                .bind(from),
        };
        let mut rows = query.bind(inner.page_size).fetch(&mut *checkout);
        let mut count = 0;
        let mut failed = None;
        // The rows not yet handed over, and the version after the last of them: `next`
        // moves only with what was handed over, so that a page read again after a failure
        // starts after the last row the reader has.
        let mut chunk = Vec::with_capacity(CHUNK.min(rows_wanted));
        let mut chunk_next = next;
        #[cfg(test)]
        let mut injected = None;
        // Rows never wait on the reader (their slots are reserved), so only the server can
        // be slow here: each row has the reply deadline.
        while let Some(row) = next_row(&mut rows, inner.reply_timeout).await {
            match row {
                Ok(row) => {
                    // The start row's version is its snapshot's, if any: the events go on
                    // after it.
                    if let Some(version) = row.try_get::<Option<i64>, _>("version").ok().flatten() {
                        chunk_next =
                            Version::new(u64::try_from(version).unwrap_or(u64::MAX)).next();
                    }
                    count += 1;
                    chunk.push(row);
                    if chunk.len() == CHUNK {
                        let rows = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        if !hand_over(&mut slots, &sink, Delivery::Rows(rows)).await {
                            return;
                        }
                        (next, started) = (chunk_next, true);
                    }
                    #[cfg(test)]
                    if let Some(code) = faults::due(&inner.schema, &stream, count) {
                        injected = Some(code);
                        break;
                    }
                }
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        drop(rows);
        #[cfg(test)]
        if let Some(code) = injected {
            failed = Some(faults::raise(&mut checkout, code).await);
        }
        match failed {
            // Aborted as a serialization failure: the page is read again from the version
            // after the last row handed over (a load's start row too, if it was not).
            Some(error) if is_serialization_failure(&error) && aborted < SERIALIZATION_RETRIES => {
                checkout.finish();
                aborted += 1;
                continue;
            }
            Some(error) => {
                checkout.finish_after(&error);
                hand_over(&mut slots, &sink, Delivery::Failed(error)).await;
                return;
            }
            None => checkout.finish(),
        }
        if !chunk.is_empty() {
            if !hand_over(&mut slots, &sink, Delivery::Rows(chunk)).await {
                return;
            }
            (next, started) = (chunk_next, true);
        }
        if count < rows_wanted {
            drop(slots);
            let _ = sink.send(Delivery::End).await;
            return;
        }
    }
}

impl<E: DomainEvent> StreamReader<EventEnvelope<E>> {
    /// A reader of `stream`'s events from version `from` on.
    pub(crate) fn new(inner: Arc<Inner>, stream: StreamId, from: Version) -> Self {
        Self {
            inner,
            stream,
            from: from.max(Version::new(1)),
            pages: Pages::Envelopes,
            decode: |row, stream| row::envelope::<E>(row, Some(stream)),
            rows: None,
            chunk: VecDeque::new(),
            task: None,
            finished: false,
        }
    }
}

impl<E: DomainEvent> StreamReader<LoadItem<E>> {
    /// An aggregate's load of `stream` ([`es_core::SnapshotStore::load_events`]).
    pub(crate) fn load(
        inner: Arc<Inner>,
        stream: StreamId,
        after: Version,
        snapshot: bool,
    ) -> Self {
        Self {
            inner,
            stream,
            from: after.next(),
            pages: Pages::Load { after, snapshot },
            decode: row::load_item::<E>,
            rows: None,
            chunk: VecDeque::new(),
            task: None,
            finished: false,
        }
    }
}

impl<T: Send + 'static> StreamReader<T> {
    fn failure(&self, error: StoreError) -> ReadError {
        error
            .with_context(format!(
                "stream `{}` from version {}",
                self.stream, self.from
            ))
            .into()
    }

    async fn next(&mut self) -> Option<Result<T, ReadError>> {
        if self.finished {
            return None;
        }
        if let Some(row) = self.chunk.pop_front() {
            return Some(self.decoded(&row));
        }
        let rows = match &mut self.rows {
            Some(rows) => rows,
            None => {
                let page = usize::try_from(self.inner.page_size).unwrap_or(1_000);
                // Room for two pages' hand-overs (a load's first page has its start row
                // too): a page's reservation never asks for more than the channel holds,
                // and the task fetches a page while the reader works through the one before.
                let (sink, rows) = mpsc::channel(2 * hand_overs(page + 1));
                let query = forward_stream(
                    Arc::clone(&self.inner),
                    self.stream.clone(),
                    self.from,
                    self.pages,
                    sink,
                );
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    self.finish();
                    return Some(Err(self.failure(StoreError::new(
                        "stream read",
                        "a Tokio runtime is required",
                    ))));
                };
                self.task = Some(runtime.spawn(query));
                self.rows.insert(rows)
            }
        };
        loop {
            match rows.recv().await {
                Some(Delivery::Rows(chunk)) => {
                    self.chunk = chunk.into();
                    // (The task hands over no empty chunk; one would only be skipped.)
                    if let Some(row) = self.chunk.pop_front() {
                        return Some(self.decoded(&row));
                    }
                }
                Some(Delivery::Failed(error)) => {
                    self.finish();
                    return Some(Err(self.failure(store_error("stream read", error))));
                }
                Some(Delivery::End) => {
                    self.finish();
                    return None;
                }
                None => {
                    self.finish();
                    // The reading task ended without a word: it panicked, or its runtime is
                    // going away; neither is the store failing for a moment.
                    return Some(Err(
                        self.failure(StoreError::new("stream read", "the read was cut short"))
                    ));
                }
            }
        }
    }

    /// `row` read into its item; the reader ends at the first error, as a stream of results
    /// does.
    fn decoded(&mut self, row: &PgRow) -> Result<T, ReadError> {
        let item = (self.decode)(row, &self.stream);
        if item.is_err() {
            self.finish();
        }
        item
    }

    fn finish(&mut self) {
        self.finished = true;
        self.rows = None;
        self.chunk.clear();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub(crate) fn into_stream(
        self,
    ) -> impl Stream<Item = Result<T, ReadError>> + Send + 'static + use<T> {
        futures_util::stream::unfold(self, |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        })
    }
}
