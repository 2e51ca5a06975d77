//! Paged readers: one stream by version, and the global log (once, or live).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use es_core::{DomainEvent, EventEnvelope, Position, ReadError, StreamId, Version};
use futures_core::Stream;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row as _};
use tokio::sync::watch;

use crate::error::{is_transient, store_error};
use crate::row;
use crate::store::Inner;

/// The first pause of a subscriber that was woken but found nothing readable yet (a
/// transaction older than the new events still runs); it doubles up to the poll interval.
const FIRST_RETRY: Duration = Duration::from_millis(1);

/// The longest pause between attempts while the server is unreachable.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

/// Reads one stream forwards, a page at a time.
pub(crate) struct StreamReader<E> {
    inner: Arc<Inner>,
    stream: StreamId,
    next: Version,
    buffer: VecDeque<PgRow>,
    exhausted: bool,
    failed: bool,
    event: PhantomData<fn() -> E>,
}

impl<E: DomainEvent> StreamReader<E> {
    pub(crate) fn new(inner: Arc<Inner>, stream: StreamId, from: Version) -> Self {
        Self {
            inner,
            stream,
            next: from.max(Version::new(1)),
            buffer: VecDeque::new(),
            exhausted: false,
            failed: false,
            event: PhantomData,
        }
    }

    async fn next(&mut self) -> Option<Result<EventEnvelope<E>, ReadError>> {
        loop {
            // A stream of results ends at its first error.
            if self.failed {
                return None;
            }
            if let Some(row) = self.buffer.pop_front() {
                let envelope = row::envelope::<E>(&row);
                self.failed = envelope.is_err();
                return Some(envelope);
            }
            if self.exhausted {
                return None;
            }
            let from = i64::try_from(self.next.get()).unwrap_or(i64::MAX);
            let page = sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.read_stream)))
                .bind(self.stream.as_str())
                .bind(from)
                .bind(self.inner.page_size)
                .fetch_all(&self.inner.pool)
                .await;
            let rows = match page {
                Ok(rows) => rows,
                Err(error) => {
                    self.failed = true;
                    return Some(Err(store_error("stream read", error).into()));
                }
            };
            self.exhausted = (rows.len() as i64) < self.inner.page_size;
            if let Some(last) = rows.last() {
                let version: i64 = last.try_get(3).unwrap_or(i64::MAX);
                self.next = Version::new(u64::try_from(version).unwrap_or(u64::MAX)).next();
            }
            self.buffer.extend(rows);
        }
    }

    pub(crate) fn into_stream(
        self,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        futures_util::stream::unfold(self, |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        })
    }
}

/// Reads the global log in (transaction id, sequence) order below the visibility horizon,
/// a page at a time; live readers then wait for more instead of ending.
pub(crate) struct LogReader<E> {
    inner: Arc<Inner>,
    /// The last position read: (transaction id, sequence number).
    after: (u64, i64),
    categories: Option<Vec<String>>,
    types: Option<Vec<String>>,
    buffer: VecDeque<PgRow>,
    /// `Some` for a subscription.
    wake: Option<watch::Receiver<u64>>,
    /// For a read that ends: the log is read up to the horizon.
    exhausted: bool,
    failed: bool,
    /// The pause before looking again while woken events are not readable yet.
    retry: Option<Duration>,
    event: PhantomData<fn() -> E>,
}

impl<E: DomainEvent> LogReader<E> {
    pub(crate) fn new(
        inner: Arc<Inner>,
        after: Position,
        categories: Option<Vec<String>>,
        types: Option<Vec<String>>,
        live: bool,
    ) -> Self {
        let (transaction, sequence) = after.parts();
        let wake = live.then(|| inner.wakeups.subscribe());
        Self {
            inner,
            after: (transaction, i64::try_from(sequence).unwrap_or(i64::MAX)),
            categories,
            types,
            buffer: VecDeque::new(),
            wake,
            exhausted: false,
            failed: false,
            retry: None,
            event: PhantomData,
        }
    }

    async fn fetch(&mut self) -> Result<Vec<PgRow>, sqlx::Error> {
        if let Some(wake) = &mut self.wake {
            // Appends from now on wake this reader; earlier ones are in this page (or held
            // back by the horizon, which the retry pauses cover).
            wake.borrow_and_update();
        }
        sqlx::query(AssertSqlSafe(Arc::clone(&self.inner.sql.read_log)))
            .bind(self.after.0.to_string())
            .bind(self.after.1)
            .bind(self.categories.as_deref())
            .bind(self.types.as_deref())
            .bind(self.inner.page_size)
            .fetch_all(&self.inner.pool)
            .await
    }

    async fn next(&mut self) -> Option<Result<EventEnvelope<E>, ReadError>> {
        let mut reconnect_pause = Duration::from_millis(10);
        loop {
            // A stream of results ends at its first error.
            if self.failed {
                return None;
            }
            if let Some(row) = self.buffer.pop_front() {
                let envelope = row::envelope::<E>(&row);
                self.failed = envelope.is_err();
                return Some(envelope);
            }
            if self.exhausted {
                return None;
            }
            let rows = match self.fetch().await {
                Ok(rows) => rows,
                Err(error) if self.wake.is_some() && is_transient(&error) => {
                    // A subscription outlives connections: resume from the same position.
                    tracing::warn!(error = &error as &dyn std::error::Error, pause = ?reconnect_pause, "subscription lost its connection; retrying");
                    tokio::time::sleep(reconnect_pause).await;
                    reconnect_pause = (reconnect_pause * 2).min(MAX_RECONNECT_PAUSE);
                    continue;
                }
                Err(error) => {
                    self.failed = true;
                    return Some(Err(store_error("log read", error).into()));
                }
            };
            let full = rows.len() as i64 >= self.inner.page_size;
            if let Some(last) = rows.last() {
                match last_position(last) {
                    Ok(position) => self.after = position,
                    Err(error) => {
                        self.failed = true;
                        return Some(Err(error));
                    }
                }
            }
            let found = !rows.is_empty();
            self.buffer.extend(rows);
            if full {
                continue;
            }
            let Some(wake) = &mut self.wake else {
                self.exhausted = true;
                continue;
            };
            if found {
                self.retry = None;
                continue;
            }
            // Caught up with the horizon: wait for a wake-up, a retry pause or the poll.
            let poll = self.inner.poll_interval;
            let pause = self.retry.unwrap_or(poll);
            tokio::select! {
                changed = wake.changed() => {
                    if changed.is_err() {
                        // Cannot happen while this reader holds the store; poll regardless.
                        tokio::time::sleep(poll).await;
                    }
                    self.retry = Some(FIRST_RETRY);
                }
                () = tokio::time::sleep(pause) => {
                    self.retry = self.retry.map(|retry| (retry * 2).min(poll)).filter(|r| *r < poll);
                }
            }
        }
    }

    pub(crate) fn into_stream(
        self,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        futures_util::stream::unfold(self, |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        })
    }
}

fn last_position(row: &PgRow) -> Result<(u64, i64), ReadError> {
    let corrupt = |error: sqlx::Error| ReadError::Corrupt {
        detail: format!("unexpected events row: {error}"),
    };
    let sequence: i64 = row.try_get(0).map_err(corrupt)?;
    let transaction: String = row.try_get(1).map_err(corrupt)?;
    let transaction = transaction.parse::<u64>().map_err(|_| ReadError::Corrupt {
        detail: format!("transaction id {transaction:?} is not a number"),
    })?;
    Ok((transaction, sequence))
}
