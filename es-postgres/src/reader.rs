//! Reading the global log (once, or live), a page at a time: the next page is fetched
//! while the caller works through the current one, so decoding on this side overlaps with
//! the server producing rows on the other. (One stream: `stream_reader`.)

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use es_core::{Backoff, DomainEvent, EventEnvelope, EventFilter, Position, ReadError, StoreError};
use futures_core::Stream;
use futures_util::{FutureExt as _, StreamExt as _};
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checkout::{Checkout, before};
use crate::error::{
    SERIALIZATION_RETRIES, is_serialization_failure, is_transient, no_reply, store_error,
};
use crate::inner::{Inner, statement};
use crate::row;
use crate::xid::Xid8;

/// The first pause of a subscriber that was woken but found nothing readable yet (a
/// transaction older than the new events still runs); it doubles (with jitter, see
/// [`Backoff`]) until it would reach the poll interval, after which the subscriber polls.
const FIRST_RETRY: Duration = Duration::from_millis(1);

/// Pauses between attempts of a subscription whose reads fail (a lost connection, a
/// server restarting, a timeout): short, so that it is back within a second of the
/// server.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(250));

/// How long a failing subscription waits for a connection before it tries afresh: sqlx
/// retries a refused connection with pauses of its own (up to a fifth of the pool's
/// acquire timeout), and a fresh attempt sees a server that is back at once. Only the wait
/// for a connection is cut short, never a query: a slow page must be allowed to finish.
const RECOVERY_ACQUIRE: Duration = Duration::from_secs(1);

pub(crate) type Page = Result<Vec<PgRow>, PageError>;

/// Why a page of the log could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// The query failed.
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// A subscription that had failed found no connection within this time (it tries
    /// again).
    #[error("no connection to the server within {0:?}")]
    NoConnection(Duration),
    /// The task reading the page ahead ended without one (it panicked or was cancelled).
    #[error("the page read ahead was lost")]
    Lost,
}

impl PageError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Sql(error) => is_transient(error),
            Self::NoConnection(_) => true,
            Self::Lost => false,
        }
    }

    pub(crate) fn into_store_error(self) -> StoreError {
        match self {
            Self::Sql(error) => store_error("log read", error),
            Self::NoConnection(_) => {
                StoreError::new("log read", self).with_kind(es_core::StoreErrorKind::Unavailable)
            }
            Self::Lost => StoreError::new("log read", self),
        }
    }
}

/// A page query running in the background.
pub(crate) struct Prefetch(Option<JoinHandle<Page>>);

impl Prefetch {
    pub(crate) fn none() -> Self {
        Self(None)
    }

    /// Starts `query` in the background if a runtime is at hand; otherwise it runs when
    /// taken.
    pub(crate) fn start(&mut self, query: impl Future<Output = Page> + Send + 'static) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.0 = Some(runtime.spawn(query));
        }
    }

    /// The prefetched page, if one was started.
    pub(crate) async fn take(&mut self) -> Option<Page> {
        let handle = self.0.take()?;
        Some(match handle.await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "page prefetch failed"
                );
                Err(PageError::Lost)
            }
        })
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// The next row of `rows`, unless the server sends nothing for `idle` (a deadline on
/// silence, not on the whole read: a long read that keeps coming is fine). Rows already
/// received cost no timer.
pub(crate) async fn next_row<S>(
    rows: &mut S,
    idle: Option<Duration>,
) -> Option<Result<PgRow, sqlx::Error>>
where
    S: Stream<Item = Result<PgRow, sqlx::Error>> + Unpin,
{
    if let Some(ready) = rows.next().now_or_never() {
        return ready;
    }
    before(idle, rows.next())
        .await
        .unwrap_or_else(|| Some(Err(no_reply(idle.unwrap_or_default()))))
}

/// What a global-log read selects.
#[derive(Clone)]
struct LogQuery {
    inner: Arc<Inner>,
    categories: Option<Arc<[String]>>,
    types: Option<Arc<[String]>>,
    /// (count, index) of the partition read.
    partition: Option<(i64, i64)>,
    including_archived: bool,
}

impl LogQuery {
    /// The next page after `after`, below the visibility horizon; with `acquire_within`,
    /// giving up if no connection comes within that time. Each row has the reply deadline
    /// (see [`next_row`]).
    fn page(
        &self,
        after: (u64, i64),
        acquire_within: Option<Duration>,
    ) -> impl Future<Output = Page> + Send + 'static {
        let query = self.clone();
        async move {
            let pool = &query.inner.pool;
            let mut aborted = 0;
            loop {
                let mut checkout = match acquire_within {
                    None => Checkout::take(pool).await?,
                    Some(limit) => tokio::time::timeout(limit, Checkout::take(pool))
                        .await
                        .map_err(|_| PageError::NoConnection(limit))??,
                };
                let mut rows = sqlx::query(query.inner.sql.read_log.clone())
                    .bind(Xid8(after.0))
                    .bind(after.1)
                    .bind(query.categories.as_deref())
                    .bind(query.types.as_deref())
                    .bind(query.inner.page_size)
                    .bind(query.partition.map(|p| p.0))
                    .bind(query.partition.map(|p| p.1))
                    .bind(query.including_archived)
                    .fetch(&mut *checkout);
                let mut page = Vec::new();
                let mut failed = None;
                while let Some(row) = next_row(&mut rows, query.inner.reply_timeout).await {
                    match row {
                        Ok(row) => page.push(row),
                        Err(error) => {
                            failed = Some(error);
                            break;
                        }
                    }
                }
                drop(rows);
                let Some(error) = failed else {
                    checkout.finish();
                    return Ok(page);
                };
                checkout.finish_after(&error);
                if is_serialization_failure(&error) && aborted < SERIALIZATION_RETRIES {
                    aborted += 1;
                    continue;
                }
                return Err(error.into());
            }
        }
    }

    /// Whether any committed event follows `after` (behind the horizon, or readable since
    /// the last read).
    async fn unread_after(&self, after: (u64, i64)) -> Result<bool, sqlx::Error> {
        statement!(self.inner, |c| {
            sqlx::query_scalar(self.inner.sql.unread_after.clone())
                .bind(Xid8(after.0))
                .bind(after.1)
                .fetch_one(c)
        })
        .await
    }
}

/// Reads the global log in (transaction id, sequence) order below the visibility horizon,
/// a page at a time; live readers then wait for more instead of ending.
pub(crate) struct LogReader<E> {
    query: LogQuery,
    /// The last position read: (transaction id, sequence number).
    after: (u64, i64),
    buffer: VecDeque<PgRow>,
    prefetch: Prefetch,
    /// `Some` for a subscription.
    wake: Option<watch::Receiver<u64>>,
    /// For a read that ends: the log is read up to the horizon.
    exhausted: bool,
    failed: bool,
    /// The number of the next retry pause (1 for the first; see [`FIRST_RETRY`]) while
    /// woken events are not readable yet; `None` to wait for the poll.
    retry: Option<u32>,
    /// A wake-up was taken by a read since the reader last asked whether events are held
    /// back: its events may be among them.
    woken: bool,
    /// The last look found committed events waiting behind the horizon.
    held: bool,
    /// Reads that failed in a row (subscriptions only; they try again).
    failures: u32,
    /// A subscription's span ([`es_core::telemetry::SUBSCRIPTION_SPAN`], debug), which
    /// its wake-ups and polls are `trace` events of; none for a read that ends. Boxed: the
    /// reader moves with every event it hands out.
    span: Option<Box<tracing::Span>>,
    event: PhantomData<fn() -> E>,
}

impl<E: DomainEvent> LogReader<E> {
    pub(crate) fn new(
        inner: Arc<Inner>,
        after: Position,
        filter: &EventFilter,
        live: bool,
    ) -> Self {
        let (categories, types, partition) = filter_parameters(filter);
        let (transaction, sequence) = after.parts();
        let wake = live.then(|| inner.wakeups.subscribe());
        let span = live.then(|| {
            Box::new(tracing::debug_span!(
                es_core::telemetry::SUBSCRIPTION_SPAN,
                %after
            ))
        });
        Self {
            query: LogQuery {
                inner,
                categories: categories.map(Arc::from),
                types: types.map(Arc::from),
                partition,
                including_archived: filter.includes_archived(),
            },
            after: (transaction, i64::try_from(sequence).unwrap_or(i64::MAX)),
            buffer: VecDeque::new(),
            prefetch: Prefetch::none(),
            wake,
            exhausted: false,
            failed: false,
            retry: None,
            // Events may already wait behind the horizon, their wake-ups long gone.
            woken: live,
            held: false,
            failures: 0,
            span,
            event: PhantomData,
        }
    }

    async fn fetch(&mut self) -> Page {
        if let Some(page) = self.prefetch.take().await {
            return page;
        }
        if let Some(wake) = &mut self.wake {
            // Appends from now on wake this reader; earlier ones are in this page (or held
            // back by the horizon, which the retry pauses cover).
            self.woken |= wake.has_changed().unwrap_or(true);
            wake.borrow_and_update();
        }
        let acquire_within = (self.failures > 0).then_some(RECOVERY_ACQUIRE);
        self.query.page(self.after, acquire_within).await
    }

    async fn next(&mut self) -> Option<Result<EventEnvelope<E>, ReadError>> {
        loop {
            // A stream of results ends at its first error.
            if self.failed {
                return None;
            }
            if let Some(row) = self.buffer.pop_front() {
                let envelope = row::envelope::<E>(&row, None);
                self.failed = envelope.is_err();
                return Some(envelope);
            }
            if self.exhausted {
                return None;
            }
            let inner = Arc::clone(&self.query.inner);
            let health = &inner.health;
            let rows = match self.fetch().await {
                Ok(rows) => {
                    self.failures = 0;
                    rows
                }
                Err(error) if self.wake.is_some() && error.is_transient() => {
                    // A subscription outlives connections, restarts and timeouts: it says
                    // so (`EventStore::stall`) and resumes from the same position.
                    health.failed(&error);
                    self.failures += 1;
                    let pause = RECONNECT.pause(self.failures);
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        ?pause,
                        "subscription cannot read the log; retrying"
                    );
                    tokio::time::sleep(pause).await;
                    continue;
                }
                Err(error) => {
                    self.failed = true;
                    let (transaction, sequence) = self.after;
                    return Some(Err(error
                        .into_store_error()
                        .with_context(format!("the log after position {transaction}:{sequence}"))
                        .into()));
                }
            };
            let full = rows.len() as i64 >= self.query.inner.page_size;
            if let Some(last) = rows.last() {
                match row::position_of(last) {
                    Ok(position) => {
                        let (transaction, sequence) = position.parts();
                        self.after = (transaction, i64::try_from(sequence).unwrap_or(i64::MAX));
                    }
                    Err(error) => {
                        self.failed = true;
                        return Some(Err(error));
                    }
                }
            }
            let mut found = false;
            for row in rows {
                if row.try_get::<bool, _>("selected").unwrap_or(true) {
                    found = true;
                    self.buffer.push_back(row);
                }
            }
            // Whatever the page held, the server answered: a failure is over.
            health.read(found);
            if full {
                self.prefetch.start(self.query.page(self.after, None));
                continue;
            }
            let Some(wake) = &mut self.wake else {
                self.exhausted = true;
                continue;
            };
            if found {
                // `held` stays: what this read found may be only the first of the events that
                // were held back (another database transaction held the horizon below them,
                // and ended), while later ones still wait behind a transaction of their own.
                // The next read that comes back empty asks again; clearing it here left such a
                // subscriber waiting for a wake-up that never comes, until the poll.
                self.retry = None;
                continue;
            }
            // Caught up with the horizon. Events committed behind it will not wake this reader
            // again (their wake-up may have been taken by a read that came back without
            // them), so while any event follows (held back, or readable since the read), look
            // again soon. (Under a filter, events of other kinds count too: that costs a few
            // quick looks.) Asked once per wake-up taken, and once per poll while events are
            // held back, not on every quiet poll.
            if self.retry.is_none() && (std::mem::take(&mut self.woken) || self.held) {
                match self.query.unread_after(self.after).await {
                    Ok(true) => {
                        self.retry = Some(1);
                        self.held = true;
                        if health.held_back() {
                            describe_horizon(&self.query.inner).await;
                        }
                    }
                    Ok(false) => {
                        self.held = false;
                        health.released();
                    }
                    Err(error) => {
                        // Ask again after the next read.
                        self.woken = true;
                        tracing::debug!(
                            error = &error as &dyn std::error::Error,
                            "cannot tell whether events follow"
                        );
                    }
                }
            }
            // Wait for a wake-up, a retry pause or the poll.
            let poll = self.query.inner.poll_interval;
            let retries = Backoff::new(FIRST_RETRY, poll);
            let pause = self.retry.map_or(poll, |retry| retries.pause(retry));
            tokio::select! {
                changed = wake.changed() => {
                    if changed.is_err() {
                        // Cannot happen while this reader holds the store; poll regardless.
                        tokio::time::sleep(poll).await;
                    }
                    self.retry = Some(1);
                    self.woken = true;
                    if let Some(span) = &self.span {
                        tracing::trace!(parent: &**span, "woken by an append");
                    }
                }
                () = tokio::time::sleep(pause) => {
                    if let Some(span) = &self.span {
                        tracing::trace!(parent: &**span, retry = ?self.retry, "looking again");
                    }
                    // Back to polling once the pauses would reach the poll interval.
                    self.retry = self
                        .retry
                        .map(|retry| retry + 1)
                        .filter(|retry| retries.ceiling(*retry) < poll);
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

/// Records what holds the log back, for [`EventStore::stall`](es_core::EventStore::stall).
pub(crate) async fn describe_horizon(inner: &Inner) {
    match crate::horizon::read(inner).await {
        Ok(horizon) => inner.health.held_back_by(horizon.to_string()),
        Err(error) => {
            tracing::debug!(
                error = &error as &dyn std::error::Error,
                "cannot read the horizon"
            );
        }
    }
}

/// A filter as the log queries bind it: categories, event types, and (count, index) of the
/// partition, each `None` for all.
#[allow(
    clippy::type_complexity,
    reason = "three optional bind parameters, named at the use"
)]
pub(crate) fn filter_parameters(
    filter: &EventFilter,
) -> (Option<Vec<String>>, Option<Vec<String>>, Option<(i64, i64)>) {
    (
        filter.categories().map(<[String]>::to_vec),
        filter.event_types().map(<[String]>::to_vec),
        filter
            .partition()
            .map(|p| (i64::from(p.count()), i64::from(p.index()))),
    )
}
