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

/// What the background query of a stream read hands over.
enum Delivery {
    Row(PgRow),
    /// A whole page of a load: one hand-over (one wake-up of the reader) a page rather
    /// than one a row, which a profile of rehydration showed as its largest cost.
    Page(Vec<PgRow>),
    Failed(sqlx::Error),
    /// The stream's end: without it, a closed channel means the query was cut short.
    End,
}

/// Reads one stream forwards.
///
/// A background task queries the stream a page at a time and passes the rows on through a
/// bounded channel: an envelope read's rows as they arrive, so this side decodes while the
/// server sends; a load's page whole, once it has come (one hand-over a page), while this
/// side decodes the page before. Before each page it reserves room for what it will hand
/// over: a query never waits on a slow reader, so no connection is held while the reader
/// works through its rows, and memory is bounded by two pages. Dropping the reader ends
/// the task.
pub(crate) struct StreamReader<T> {
    inner: Arc<Inner>,
    stream: StreamId,
    from: Version,
    pages: Pages,
    /// Reads a row into an item.
    decode: fn(&PgRow, &StreamId) -> Result<T, ReadError>,
    rows: Option<mpsc::Receiver<Delivery>>,
    /// The rest of a page handed over whole.
    page: VecDeque<PgRow>,
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

impl<T> Drop for StreamReader<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Queries the stream page after page, handing each row (or a load's whole page) over,
/// until it ends or the reader
/// goes away.
async fn forward_stream(
    inner: Arc<Inner>,
    stream: StreamId,
    mut next: Version,
    pages: Pages,
    sink: mpsc::Sender<Delivery>,
) {
    let page = usize::try_from(inner.page_size).unwrap_or(1_000);
    let mut aborted = 0;
    // A load's first page is the start row and up to a page of events.
    let mut started = matches!(pages, Pages::Envelopes);
    let whole_pages = matches!(pages, Pages::Load { .. });
    loop {
        let extra = usize::from(!started);
        // One slot more than a page holds, so that a failure can always be handed over (a
        // load hands its page over whole: one slot, and one for its end or failure).
        let wanted = if whole_pages { 2 } else { page + extra + 1 };
        let Ok(mut slots) = sink.reserve_many(wanted).await else {
            return;
        };
        let mut checkout = match Checkout::take(&inner.pool).await {
            Ok(checkout) => checkout,
            Err(error) => {
                if let Some(slot) = slots.next() {
                    slot.send(Delivery::Failed(error));
                }
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
        // A load's page, handed over once it is whole; the version after its last row.
        let mut whole = Vec::new();
        let mut whole_next = next;
        // Rows never wait on the reader (their slots are reserved), so only the server can
        // be slow here: each row has the reply deadline.
        while let Some(row) = next_row(&mut rows, inner.reply_timeout).await {
            match row {
                Ok(row) => {
                    let after =
                        row.try_get::<Option<i64>, _>("version")
                            .ok()
                            .flatten()
                            .map(|version| {
                                Version::new(u64::try_from(version).unwrap_or(u64::MAX)).next()
                            });
                    count += 1;
                    if whole_pages {
                        whole_next = after.unwrap_or(whole_next);
                        whole.push(row);
                    } else {
                        next = after.unwrap_or(next);
                        if let Some(slot) = slots.next() {
                            slot.send(Delivery::Row(row));
                        }
                    }
                }
                Err(error) => {
                    failed = Some(error);
                    break;
                }
            }
        }
        drop(rows);
        match failed {
            // Aborted as a serialization failure: the page is read again from the version
            // after the last row passed on.
            // (A load's page was not handed over: it is read again whole, its start row
            // too if it was the first.)
            Some(error) if is_serialization_failure(&error) && aborted < SERIALIZATION_RETRIES => {
                checkout.finish();
                aborted += 1;
                continue;
            }
            Some(error) => {
                // A statement the server refused leaves the connection usable; anything
                // else (no reply, a broken connection) closes it.
                if error.as_database_error().is_some() {
                    checkout.finish();
                }
                if let Some(slot) = slots.next() {
                    slot.send(Delivery::Failed(error));
                }
                return;
            }
            None => checkout.finish(),
        }
        if whole_pages {
            next = whole_next;
            if let Some(slot) = slots.next() {
                slot.send(Delivery::Page(whole));
            }
        }
        started = true;
        if count < page + extra {
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
            page: VecDeque::new(),
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
            page: VecDeque::new(),
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
        if let Some(row) = self.page.pop_front() {
            return Some(self.decoded(&row));
        }
        let rows = match &mut self.rows {
            Some(rows) => rows,
            None => {
                let page = usize::try_from(self.inner.page_size).unwrap_or(1_000);
                // Envelopes: room for two pages of rows, each with a start row and a
                // failure (a page's reservation never asks for more than the channel
                // holds). A load's page is one message: two slots, so the task fetches
                // the next page only once the reader has taken this one (two pages in
                // memory at most, the one being decoded and the one being fetched).
                let capacity = match self.pages {
                    Pages::Envelopes => 2 * (page + 2),
                    Pages::Load { .. } => 2,
                };
                let (sink, rows) = mpsc::channel(capacity);
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
        let mut delivery = rows.recv().await;
        // An empty page (a load past the end) is not an item: the end follows it.
        while let Some(Delivery::Page(page)) = &delivery
            && page.is_empty()
        {
            delivery = rows.recv().await;
        }
        match delivery {
            Some(Delivery::Row(row)) => Some(self.decoded(&row)),
            Some(Delivery::Page(page)) => {
                self.page = page.into();
                let row = self.page.pop_front()?;
                Some(self.decoded(&row))
            }
            Some(Delivery::Failed(error)) => {
                self.finish();
                Some(Err(self.failure(store_error("stream read", error))))
            }
            Some(Delivery::End) => {
                self.finish();
                None
            }
            None => {
                self.finish();
                // The reading task ended without a word: it panicked, or its runtime is
                // going away; neither is the store failing for a moment.
                Some(Err(self.failure(StoreError::new(
                    "stream read",
                    "the read was cut short",
                ))))
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
        self.page.clear();
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
