//! Coalesced commits ([`PgEventStoreBuilder::coalesce_commits`]): appends to different
//! streams that wait at the same moment share one transaction, and so one commit.
//!
//! # Shape
//!
//! An append that may coalesce (it has events, no inline projection selects them, and it
//! is not conditional) is encoded by its caller and handed to the store's committer task,
//! which takes whatever is waiting when it is free (up to the batch limit, never two
//! appends to one stream in a batch or in two transactions under way: the later one waits
//! for the next batch) and runs it in one transaction, one statement
//! (`sql/append_coalesced.sql`). There is no timer: a batch is what queued while the
//! previous transactions ran (the committer lets the tasks that are ready run once, a
//! turn of the scheduler, before it takes one), so under load batches grow and alone an
//! append pays only the hop to the task and back. A batch of one runs as the normal path's
//! single statement; a batch of single-event appends runs in autocommit (one round trip:
//! an append of one row gets all of it or none, so there is nothing to roll back); a batch
//! with a larger append runs in a transaction (`BEGIN`, the statement, `COMMIT`).
//!
//! The committer replies to each append: stored (its rows), or "run alone" (the caller
//! then takes the normal path, [`PgEventStore::append_in_span`], which inserts again and,
//! if refused, classifies: conflict, idempotent repeat, duplicate id, archived), or failed
//! (the commit's reply was lost: a transient error, as for a lone append whose reply was
//! lost). It never reports a conflict itself: only the normal path, which explains it, does.
//!
//! # Why each append keeps its own outcome (READ COMMITTED)
//!
//! The statement skips (`ON CONFLICT DO NOTHING`) every row whose `(stream, version)` or
//! event id is taken, instead of failing: a row committed before the statement, one
//! committed since its snapshot, or one in flight (the insert waits for that transaction:
//! if it commits the row is skipped, if it aborts the row goes in), or one earlier in the
//! same statement (two appends of the batch with a clashing id). So one append's conflict
//! never aborts the others. Per append, the guard and the skips give:
//!
//! - `Exact(n)`: the guard needs version `n` visible to the statement (versions are never
//!   deleted). Rows go at `n + 1 ..= n + k`. All of them inserted means none of those
//!   versions was taken by anyone, committed or in flight, so the stream ended at `n`:
//!   exactly the state in which a lone append succeeds. None inserted (the guard failed,
//!   or every row was taken) goes to the normal path. Some inserted (another writer took
//!   some of the versions, or an id clashed) cannot be kept: see below.
//! - `NoStream`: as `Exact(0)` without the guard; version 1 taken means the stream exists.
//! - `Any`: rows go after the stream's end as the statement's snapshot saw it; a writer
//!   that committed since took those versions and the rows are skipped (none: the normal
//!   path, which retries `Any`; some: below).
//! - An archived stream (`es_stream_open` false) inserts nothing, and goes to the normal
//!   path, which reports it. The function takes the stream's shared lock as a lone append
//!   does, held to the batch's commit, so an archive waits for the batch and then sees its
//!   events (an archive locks one stream only, so it cannot deadlock with a batch).
//!
//! An append left with some of its rows is the one outcome a transaction cannot keep
//! (atomicity; only an append of several events can have it, which is why a batch of
//! single-event appends may commit with its statement), so the whole batch is rolled back and every append of it runs alone: the
//! others lose only time. Otherwise the batch commits: appends with all their rows are
//! stored, appends with none run alone, against a state that includes the batch.
//!
//! # Other guarantees
//!
//! - Gapless log: readers order the log by (transaction id, position) below the oldest
//!   transaction still running; a batch is one transaction, as a multi-event append is.
//! - Idempotency: a repeat inserts nothing (its ids are taken) and is recognised on the
//!   normal path.
//! - Inline projections: an append that one of them selects never coalesces, so the
//!   projection runs in the append's own transaction as before.
//! - Cancellation: a caller that drops its future drops only its reply receiver; the batch
//!   goes on without it (a caller gone before its batch starts is left out), so an append
//!   acknowledged to anyone is committed and no caller's cancellation aborts another's
//!   append. Dropping the store lets the task finish the transactions under way and end.
//! - Deadlines: each step of a batch has the reply deadline; a caller waits to be queued
//!   at most one (it then runs alone: nothing was queued), and for its reply at most four
//!   (queueing, begin, insert, commit), then fails transiently (appending the same event
//!   ids again tells whether it was stored). A lost reply to a batch's commit (or to an
//!   autocommit statement) fails every append that had rows in it so; the others run
//!   alone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock, Weak};

use es_core::{AppendError, Committed, DomainEvent, ExpectedVersion, NewEvent, StreamId};
use es_core::{StoreError, StoreErrorKind};
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgRow};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id, JoinSet};
use tracing::Instrument as _;

use super::PgEventStore;
use super::append::{Batch, committed};
use crate::checkout::{before, within};
use crate::error::{no_reply, store_error};
use crate::inner::{Inner, statement};
use crate::tx::PgTx;

/// The committer of one store: its limits, and the queue to its task (started by the first
/// append that coalesces, as that is the first moment a runtime is sure to be there).
pub(crate) struct Coalescer {
    max_appends: usize,
    max_transactions: usize,
    queue: OnceLock<mpsc::Sender<Request>>,
}

impl Coalescer {
    /// At most `max_appends` appends per transaction, at most `max_transactions`
    /// transactions under way at once (each at least 1).
    pub(crate) fn new(max_appends: usize, max_transactions: usize) -> Self {
        Self {
            max_appends: max_appends.max(1),
            max_transactions: max_transactions.max(1),
            queue: OnceLock::new(),
        }
    }

    /// The queue to the task, started on the current runtime if need be; `None` outside a
    /// tokio runtime, where the append takes the normal path.
    fn queue(&self, inner: &Arc<Inner>) -> Option<&mpsc::Sender<Request>> {
        if let Some(queue) = self.queue.get() {
            return Some(queue);
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(self.queue.get_or_init(|| {
            // Room for a few batches: a caller beyond that waits to be queued, which is
            // the back pressure.
            let (sender, receiver) = mpsc::channel(self.max_appends * (self.max_transactions + 2));
            let committer = Committer {
                inner: Arc::downgrade(inner),
                max_appends: self.max_appends,
                max_transactions: self.max_transactions,
            };
            // The task holds the store only weakly: dropping the last clone of the store
            // closes the queue, and the task ends once its transactions have.
            runtime.spawn(committer.run(receiver));
            sender
        }))
    }
}

/// One append waiting for a batch.
struct Request {
    stream: StreamId,
    /// The expected version as the statement takes it: `None` for any, 0 for no stream.
    expected: Option<i64>,
    batch: Batch,
    reply: oneshot::Sender<Outcome>,
}

/// What the committer tells an append.
enum Outcome {
    /// Committed: the rows it inserted.
    Stored(Vec<PgRow>),
    /// Nothing of it is stored: it takes the normal path, which stores or explains it.
    Alone,
    /// It may or may not be stored (the reply to the commit was lost).
    Failed(StoreError),
}

impl PgEventStore {
    /// Appends through the committer where the append may coalesce, on the normal path
    /// otherwise; in the span of an append, as [`PgEventStore::append_batch`].
    pub(super) async fn append_coalesced<E: DomainEvent>(
        &self,
        coalescer: &Coalescer,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
    ) -> Result<Committed<E>, AppendError> {
        let span = tracing::debug_span!(
            es_core::telemetry::APPEND_SPAN,
            %stream,
            events = events.len(),
            %expected,
            coalesced = true,
        );
        self.through_committer(coalescer, stream, expected, events)
            .instrument(span)
            .await
    }

    async fn through_committer<E: DomainEvent>(
        &self,
        coalescer: &Coalescer,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent<E>>,
    ) -> Result<Committed<E>, AppendError> {
        // An empty append writes nothing, so it has nothing to share.
        if events.is_empty() {
            return self.append_in_span(stream, expected, events).await;
        }
        let batch = Batch::encode(stream, &mut events)?;
        // Their projections run in the append's own transaction.
        if !self.inline_for(stream, &batch).is_empty() {
            return self.append_in_span(stream, expected, events).await;
        }
        let Some(queue) = coalescer.queue(&self.inner) else {
            return self.append_in_span(stream, expected, events).await;
        };
        self.refuse_overflow(stream, expected, events.len()).await?;
        let (reply, outcome) = oneshot::channel();
        let request = Request {
            stream: stream.clone(),
            expected: match expected {
                ExpectedVersion::Any => None,
                ExpectedVersion::NoStream => Some(0),
                ExpectedVersion::Exact(version) => {
                    Some(i64::try_from(version.get()).unwrap_or(i64::MAX))
                }
            },
            batch,
            reply,
        };
        let deadline = self.inner.reply_timeout;
        match before(deadline, queue.send(request)).await {
            Some(Ok(())) => {}
            // Not queued (the queue stayed full, or the task is gone with its runtime):
            // nothing of it is stored.
            None | Some(Err(_)) => return self.append_in_span(stream, expected, events).await,
        }
        let transient = |source: StoreError| AppendError::Store {
            stream: stream.clone(),
            source: source.with_context(format!("stream `{stream}`")),
        };
        let wait = deadline.map(|d| d.saturating_mul(4));
        match before(wait, outcome).await {
            Some(Ok(Outcome::Stored(rows))) => committed(stream, events, &rows),
            Some(Ok(Outcome::Alone)) => self.append_in_span(stream, expected, events).await,
            Some(Ok(Outcome::Failed(source))) => Err(transient(source)),
            // Its batch may have committed: the caller appends the same ids again to know.
            None => Err(transient(store_error(
                "append",
                no_reply(wait.unwrap_or_default()),
            ))),
            Some(Err(_)) => Err(transient(
                StoreError::new(
                    "append",
                    "the committer stopped (its runtime shut down) with the append in a \
                     transaction: it may or may not be stored",
                )
                .with_kind(StoreErrorKind::Unavailable),
            )),
        }
    }
}

/// The committer task's settings; the store, weakly.
struct Committer {
    inner: Weak<Inner>,
    max_appends: usize,
    max_transactions: usize,
}

impl Committer {
    /// Takes what is waiting into batches whenever a transaction slot is free, until the
    /// queue closes and the last transaction ended.
    async fn run(self, mut queue: mpsc::Receiver<Request>) {
        let mut waiting: VecDeque<Request> = VecDeque::new();
        // The streams of the transactions under way, by task.
        let mut busy: HashMap<Id, Vec<String>> = HashMap::new();
        let mut running: JoinSet<()> = JoinSet::new();
        let room = self.max_appends * (self.max_transactions + 1);
        let mut open = true;
        loop {
            // One turn of the scheduler before taking a batch (no timer): the writers that
            // the last replies woke, and whoever else is ready, queue their next appends
            // first, so that a batch is what is ready now rather than the first to come.
            tokio::task::yield_now().await;
            while open && waiting.len() < room {
                match queue.try_recv() {
                    Ok(request) => waiting.push_back(request),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            while running.len() < self.max_transactions {
                let in_use: HashSet<&str> = busy.values().flatten().map(String::as_str).collect();
                let batch = take_batch(&mut waiting, &in_use, self.max_appends);
                if batch.is_empty() {
                    break;
                }
                // Every caller holds a clone of the store while it waits; none left means
                // nobody waits for these.
                let Some(inner) = self.inner.upgrade() else {
                    continue;
                };
                let streams = batch.iter().map(|r| r.stream.as_str().to_owned()).collect();
                let task = running.spawn(commit(inner, batch));
                busy.insert(task.id(), streams);
            }
            if !open && waiting.is_empty() && running.is_empty() {
                return;
            }
            tokio::select! {
                request = queue.recv(), if open && waiting.len() < room => match request {
                    Some(request) => waiting.push_back(request),
                    None => open = false,
                },
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(error) => error.id(),
                    };
                    busy.remove(&id);
                }
            }
        }
    }
}

/// The next batch from `waiting`, oldest first: at most `max` appends, each to a stream of
/// its own and none in a transaction under way (`in_use`); the rest keep their order.
/// Appends whose callers went away are dropped (nothing of them was stored, nobody waits).
fn take_batch(waiting: &mut VecDeque<Request>, in_use: &HashSet<&str>, max: usize) -> Vec<Request> {
    let mut batch = Vec::new();
    let mut taken: HashSet<String> = HashSet::new();
    let mut kept = VecDeque::with_capacity(waiting.len());
    while let Some(request) = waiting.pop_front() {
        if request.reply.is_closed() {
            continue;
        }
        let stream = request.stream.as_str();
        if batch.len() < max && !in_use.contains(stream) && !taken.contains(stream) {
            taken.insert(stream.to_owned());
            batch.push(request);
        } else {
            kept.push_back(request);
        }
    }
    *waiting = kept;
    batch
}

/// Runs `batch` and tells each append its outcome.
async fn commit(inner: Arc<Inner>, mut batch: Vec<Request>) {
    if batch.len() == 1 {
        return alone(inner, batch.pop()).await;
    }
    // One lock order for every committer of every process (see the statement).
    batch.sort_by(|a, b| a.stream.as_str().cmp(b.stream.as_str()));
    let outcomes = match shared(&inner, &batch).await {
        Shared::Committed(mut stored) => {
            inner.wakeups.appended();
            batch
                .iter()
                .map(|_| {
                    stored
                        .pop_front()
                        .flatten()
                        .map_or(Outcome::Alone, Outcome::Stored)
                })
                .collect()
        }
        Shared::Nothing => batch.iter().map(|_| Outcome::Alone).collect(),
        Shared::Unknown(error, stored) => batch
            .iter()
            .zip(stored)
            .map(|(request, stored)| {
                if stored {
                    Outcome::Failed(
                        store_error("append", clone_error(&error))
                            .with_context(format!("stream `{}` (coalesced)", request.stream)),
                    )
                } else {
                    Outcome::Alone
                }
            })
            .collect::<Vec<_>>(),
    };
    for (request, outcome) in batch.into_iter().zip(outcomes) {
        // A caller that went away has nobody to tell.
        let _ = request.reply.send(outcome);
    }
}

/// A batch of one: the normal path's single statement, in autocommit, so that a lone
/// writer pays no `BEGIN` and `COMMIT` round trips. It either inserts every row or none
/// (it fails on a taken version or id, atomically).
async fn alone(inner: Arc<Inner>, request: Option<Request>) {
    let Some(request) = request else { return };
    let store = PgEventStore {
        inner: Arc::clone(&inner),
    };
    let expected = match request.expected {
        None => ExpectedVersion::Any,
        Some(0) => ExpectedVersion::NoStream,
        Some(version) => {
            ExpectedVersion::Exact(es_core::Version::new(u64::try_from(version).unwrap_or(0)))
        }
    };
    let (stream, batch) = (&request.stream, &request.batch);
    let (store, inner) = (&store, &*inner);
    let inserted = statement!(inner, |c| store.insert_on(c, stream, expected, batch)).await;
    let outcome = match inserted {
        Ok(rows) if rows.len() == batch.ids.len() => {
            inner.wakeups.appended();
            Outcome::Stored(rows)
        }
        // Refused: the normal path inserts again and explains it.
        Ok(rows) if rows.is_empty() => Outcome::Alone,
        Ok(rows) => Outcome::Failed(StoreError::new(
            "append",
            format!(
                "inserted {} rows for {} events",
                rows.len(),
                batch.ids.len()
            ),
        )),
        // Refused by the server (a lost race, a taken id), or never sent (no connection
        // came free): nothing is stored.
        Err(error) if nothing_done(&error) => Outcome::Alone,
        // No reply: the statement may have committed.
        Err(error) => Outcome::Failed(store_error("append", error)),
    };
    let _ = request.reply.send(outcome);
}

/// How a shared transaction ended.
enum Shared {
    /// Committed: each append's rows, in the batch's order (`None`: it inserted none).
    Committed(VecDeque<Option<Vec<PgRow>>>),
    /// Nothing is stored (rolled back, or never begun).
    Nothing,
    /// The commit's reply was lost; for each append, whether it had rows in it.
    Unknown(sqlx::Error, Vec<bool>),
}

/// Runs the batch's statement, and commits it if every append got all of its rows or
/// none.
///
/// A batch of single-event appends runs as one statement in autocommit: one round trip,
/// as a lone append. It needs no chance to roll back, because an append of one row gets
/// all of it or none, never a part. A batch with a larger append runs in a transaction,
/// which it rolls back if one of them got only a part.
async fn shared(inner: &Inner, batch: &[Request]) -> Shared {
    if batch.iter().all(|r| r.batch.ids.len() == 1) {
        return autocommit(inner, batch).await;
    }
    let deadline = inner.reply_timeout;
    let Ok(mut tx) = within(deadline, PgTx::begin(&inner.pool)).await else {
        return Shared::Nothing;
    };
    let rows = match within(deadline, insert(inner, &mut tx, batch)).await {
        Ok(rows) => rows,
        // A deadlock with another process's batch, a serialization failure under a
        // stricter isolation, a lost connection: nothing is stored, and each append
        // alone meets (and explains) whatever it meets.
        Err(_) => {
            let _ = within(deadline, tx.rollback()).await;
            return Shared::Nothing;
        }
    };
    let Some(stored) = apportion(batch, rows) else {
        let _ = within(deadline, tx.rollback()).await;
        return Shared::Nothing;
    };
    if stored.iter().all(Option::is_none) {
        let _ = within(deadline, tx.rollback()).await;
        return Shared::Nothing;
    }
    match within(deadline, tx.commit()).await {
        Ok(()) => Shared::Committed(stored.into()),
        // The server refused the commit (a serialization failure under a stricter
        // isolation, say): the transaction is gone.
        Err(error) if nothing_done(&error) => Shared::Nothing,
        Err(error) => Shared::Unknown(error, stored.iter().map(Option::is_some).collect()),
    }
}

/// [`shared`] for a batch of single-event appends.
async fn autocommit(inner: &Inner, batch: &[Request]) -> Shared {
    match statement!(inner, |c| insert(inner, c, batch)).await {
        Ok(rows) => match apportion(batch, rows) {
            Some(stored) => Shared::Committed(stored.into()),
            // Cannot be (one row per append, of the batch's streams), and it committed:
            // say so rather than guess which.
            None => Shared::Unknown(
                sqlx::Error::Protocol("rows the coalesced statement cannot have returned".into()),
                vec![true; batch.len()],
            ),
        },
        Err(error) if nothing_done(&error) => Shared::Nothing,
        // No reply: any append of it may be stored.
        Err(error) => Shared::Unknown(error, vec![true; batch.len()]),
    }
}

/// Each append's rows (`None` for none); `None` if an append got some but not all of its
/// rows, or a row names a stream not in the batch, which the transaction must not keep.
fn apportion(batch: &[Request], rows: Vec<PgRow>) -> Option<Vec<Option<Vec<PgRow>>>> {
    let mut stored: Vec<Vec<PgRow>> = batch.iter().map(|_| Vec::new()).collect();
    for row in rows {
        let stream: &str = row.try_get("stream_id").ok()?;
        // The batch is sorted by stream, and its streams are distinct.
        let index = batch
            .binary_search_by(|r| r.stream.as_str().cmp(stream))
            .ok()?;
        stored[index].push(row);
    }
    batch
        .iter()
        .zip(stored)
        .map(|(request, rows)| match rows.len() {
            0 => Some(None),
            n if n == request.batch.ids.len() => Some(Some(rows)),
            _ => None,
        })
        .collect()
}

/// The batch's statement: the appends' streams and expected versions, and every event's
/// append, place and columns, flattened.
async fn insert(
    inner: &Inner,
    connection: &mut PgConnection,
    batch: &[Request],
) -> Result<Vec<PgRow>, sqlx::Error> {
    let streams: Vec<&str> = batch.iter().map(|r| r.stream.as_str()).collect();
    let expected: Vec<Option<i64>> = batch.iter().map(|r| r.expected).collect();
    let events: usize = batch.iter().map(|r| r.batch.ids.len()).sum();
    let mut appends = Vec::with_capacity(events);
    let mut places = Vec::with_capacity(events);
    let mut all = Batch::empty();
    for (index, request) in batch.iter().enumerate() {
        let b = &request.batch;
        for place in 0..b.ids.len() {
            appends.push(index as i64 + 1);
            places.push(place as i64 + 1);
        }
        all.ids.extend_from_slice(&b.ids);
        all.types.extend_from_slice(&b.types);
        all.schema_versions.extend_from_slice(&b.schema_versions);
        all.payloads.extend_from_slice(&b.payloads);
        all.correlation_ids.extend_from_slice(&b.correlation_ids);
        all.causation_ids.extend_from_slice(&b.causation_ids);
        all.actors.extend_from_slice(&b.actors);
        all.user_metadata.extend_from_slice(&b.user_metadata);
        all.traceparents.extend_from_slice(&b.traceparents);
        all.tags.extend_from_slice(&b.tags);
    }
    sqlx::query(inner.sql.append_coalesced.clone())
        .bind(&streams)
        .bind(&expected)
        .bind(&appends)
        .bind(&places)
        .bind(&all.ids)
        .bind(&all.types)
        .bind(&all.schema_versions)
        .bind(&all.payloads)
        .bind(&all.correlation_ids)
        .bind(&all.causation_ids)
        .bind(&all.actors)
        .bind(&all.user_metadata)
        .bind(&all.traceparents)
        .bind(&all.tags)
        .fetch_all(connection)
        .await
}

/// Whether `error` says for sure that its statement stored nothing: the server answered
/// with an error, or no connection came free to send it on. Anything else (no reply, a
/// lost connection) leaves the outcome unknown.
fn nothing_done(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(_) | sqlx::Error::PoolTimedOut)
}

/// A copy of `error` good enough for the several appends one lost reply concerns: its
/// kind (what callers act on) and its message.
fn clone_error(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        other => sqlx::Error::Io(std::io::Error::other(other.to_string())),
    }
}
