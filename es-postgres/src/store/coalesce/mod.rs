//! Coalesced commits ([`PgEventStoreBuilder::coalesce_commits`]): appends to different
//! streams that wait at the same moment share one transaction, and so one commit.
//!
//! # Shape
//!
//! An append that may coalesce (it has events, no inline projection selects them, and it
//! is not conditional) is encoded by its caller and handed to the store's committer task,
//! which takes whatever is waiting when it is free (up to the batch limits, never two
//! appends to one stream in a batch or in two transactions under way: the later one runs
//! alone) and runs it in one transaction, one statement
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
//! - Deadlines: each step of a batch has the reply deadline; a caller never waits to be
//!   queued (a full queue sends it alone at once: that is the back pressure), and waits
//!   for its reply at most four (a transaction slot, begin, insert, commit), then fails
//!   transiently (appending the same event ids again tells whether it was stored). A lost
//!   reply to a batch's commit (or to an autocommit statement) fails every append that
//!   had rows in it so; the others run alone. So does an error at that step that may have
//!   come after the commit took effect (the server ending the session, class 08 or 57P):
//!   only a refusal (a serialization failure, a deadlock, a constraint) or a statement
//!   never sent says for sure that nothing was stored.
//! - Streams: an append to a stream that already has one waiting or under way goes
//!   alone at once (it could not join the next batch, and must not hold a place in the
//!   queue that appends to other streams could use).
//! - Size: a batch holds at most [`MAX_SHARED_BYTES`] of events (an append larger than
//!   that goes alone); one append is limited by [`es_core::limits::MAX_BATCH_BYTES`].
//!
//! # Runtimes
//!
//! The committer task runs on the runtime of an append that found none running: a
//! runtime that shuts down (one per test, one per request) ends it, and the next append
//! starts another on its own runtime, as the wake-up tasks do. Coalescing needs a
//! multi-thread runtime: on a current-thread runtime the task would run only while the
//! runtime's own thread is driving it, so a runtime left idle (a `block_on` that
//! returned) would hold every other runtime's appends to their reply deadline, and even
//! when driven, the callers and the committer take turns on one thread, with no second
//! connection's worth of work to overlap. Appends on a current-thread runtime take the
//! normal path.
//!
//! # Logs
//!
//! Each batch runs in a `coalesced_commit` debug span with its numbers of appends and
//! events. When a batch's statement fails and its appends run alone, the error is logged
//! (debug for a refusal the batch expects to meet now and then, warn for anything else);
//! never a payload or a value.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use es_core::{AppendError, Committed, DomainEvent, ExpectedVersion, NewEvent, StreamId};
use es_core::{StoreError, StoreErrorKind};
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgRow};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id, JoinHandle, JoinSet};
use tracing::Instrument as _;

use super::PgEventStore;
use super::append::{Batch, append_span, committed};
use crate::checkout::{before, within};
use crate::error::{is_serialization_failure, no_reply, store_error};
use crate::inner::{Inner, statement};
use crate::tx::PgTx;

/// The most bytes of events (payloads and metadata, as JSON) one batch holds; an append
/// larger than that runs alone.
///
/// A batch's columns are built, held and sent whole, and each of its steps has one reply
/// deadline, however much it carries: so a batch must stay small enough to send well
/// within it. Coalescing pays off for small appends, whose cost is the commit, not the
/// bytes; an append of megabytes costs its transfer either way, and sharing a commit
/// saves it nothing.
pub(crate) const MAX_SHARED_BYTES: usize = 4 * 1024 * 1024;

/// The committer of one store: its limits, and the queue to its task with the task's
/// handle (started by an append that found no task running, as that is a moment a runtime
/// is sure to be there).
pub(crate) struct Coalescer {
    max_appends: usize,
    max_transactions: usize,
    task: Mutex<Option<(mpsc::Sender<Request>, JoinHandle<()>)>>,
}

impl Coalescer {
    /// At most `max_appends` appends per transaction, at most `max_transactions`
    /// transactions under way at once (each at least 1).
    pub(crate) fn new(max_appends: usize, max_transactions: usize) -> Self {
        Self {
            max_appends: max_appends.max(1),
            max_transactions: max_transactions.max(1),
            task: Mutex::new(None),
        }
    }

    /// The queue to the task, which is started on the current runtime if it never ran or
    /// has ended (its runtime shut down); `None` outside a multi-thread Tokio runtime,
    /// where the append takes the normal path (see the module's "Runtimes").
    fn queue(&self, inner: &Arc<Inner>) -> Option<mpsc::Sender<Request>> {
        let runtime = Handle::try_current().ok()?;
        if !matches!(runtime.runtime_flavor(), RuntimeFlavor::MultiThread) {
            return None;
        }
        // A panic while holding this lock leaves a task or none: both are usable.
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((sender, handle)) = &*task
            && !sender.is_closed()
            && !handle.is_finished()
        {
            return Some(sender.clone());
        }
        // Room for a few batches: a caller beyond that runs alone, which is the back
        // pressure.
        let (sender, receiver) = mpsc::channel(self.max_appends * (self.max_transactions + 2));
        let committer = Committer {
            inner: Arc::downgrade(inner),
            max_appends: self.max_appends,
            max_transactions: self.max_transactions,
        };
        // The task holds the store only weakly: dropping the last clone of the store
        // closes the queue, and the task ends once its transactions have.
        let handle = runtime.spawn(committer.run(receiver));
        *task = Some((sender.clone(), handle));
        Some(sender)
    }
}

/// One append waiting for a batch.
struct Request {
    stream: StreamId,
    /// The expected version as the statement takes it: `None` for any, 0 for no stream.
    expected: Option<i64>,
    batch: Batch,
    /// The events' size as JSON, as the limits count it.
    bytes: usize,
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
        let span = append_span(stream, events.len(), expected);
        span.record("coalesced", true);
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
        // Too large to share a batch's deadline with others, and too large to gain from it.
        let bytes = encoded_bytes(&events, &batch);
        if bytes > MAX_SHARED_BYTES {
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
            bytes,
            reply,
        };
        let deadline = self.inner.reply_timeout;
        // Never wait to be queued: a full queue means batches enough are waiting, and this
        // append does better alone than behind them.
        if let Err(error) = queue.try_send(request) {
            // Not queued (full, or the task just ended with its runtime): nothing of it is
            // stored.
            tracing::trace!(
                full = matches!(error, mpsc::error::TrySendError::Full(_)),
                "not queued to the committer: alone"
            );
            return self.append_in_span(stream, expected, events).await;
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
                    Ok(request) => admit(&mut waiting, &busy, request),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            while running.len() < self.max_transactions {
                let in_use: HashSet<&str> = busy.values().flatten().map(String::as_str).collect();
                let batch = take_batch(&mut waiting, &in_use, self.max_appends, MAX_SHARED_BYTES);
                if batch.is_empty() {
                    break;
                }
                // Every caller holds a clone of the store while it waits; none left means
                // nobody waits for these.
                let Some(inner) = self.inner.upgrade() else {
                    continue;
                };
                let streams = batch.iter().map(|r| r.stream.as_str().to_owned()).collect();
                let task = running.spawn(commit::commit(inner, batch));
                busy.insert(task.id(), streams);
            }
            if !open && waiting.is_empty() && running.is_empty() {
                return;
            }
            tokio::select! {
                request = queue.recv(), if open && waiting.len() < room => match request {
                    Some(request) => admit(&mut waiting, &busy, request),
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

/// Queues `request` to wait for a batch, unless its stream already has an append waiting
/// or under way: it could not join the next batch, and waiting would take a place in the
/// queue from appends to other streams, so it runs alone at once (the normal path waits
/// for the other append's transaction if need be, and explains a conflict).
fn admit(waiting: &mut VecDeque<Request>, busy: &HashMap<Id, Vec<String>>, request: Request) {
    let stream = request.stream.as_str();
    let claimed = waiting.iter().any(|r| r.stream.as_str() == stream)
        || busy.values().flatten().any(|s| s == stream);
    if claimed {
        // A caller that went away has nobody to tell.
        let _ = request.reply.send(Outcome::Alone);
    } else {
        waiting.push_back(request);
    }
}

/// The next batch from `waiting`, oldest first: at most `max` appends and `max_bytes` of
/// events (the first append is always taken), each to a stream of its own and none in a
/// transaction under way (`in_use`); the rest keep their order. Appends whose callers went
/// away are dropped (nothing of them was stored, nobody waits).
fn take_batch(
    waiting: &mut VecDeque<Request>,
    in_use: &HashSet<&str>,
    max: usize,
    max_bytes: usize,
) -> Vec<Request> {
    let mut batch = Vec::new();
    let mut bytes = 0_usize;
    let mut taken: HashSet<String> = HashSet::new();
    let mut kept = VecDeque::with_capacity(waiting.len());
    while let Some(request) = waiting.pop_front() {
        if request.reply.is_closed() {
            continue;
        }
        let stream = request.stream.as_str();
        let fits = batch.is_empty() || bytes.saturating_add(request.bytes) <= max_bytes;
        if batch.len() < max && fits && !in_use.contains(stream) && !taken.contains(stream) {
            taken.insert(stream.to_owned());
            bytes = bytes.saturating_add(request.bytes);
            batch.push(request);
        } else {
            kept.push_back(request);
        }
    }
    *waiting = kept;
    batch
}

/// The events' size as JSON (payloads and metadata), as the limits count it; an event
/// the limits would refuse (it cannot be: `batch` was encoded from them) counts as too
/// large to share.
fn encoded_bytes<E: DomainEvent>(events: &[NewEvent<E>], batch: &Batch) -> usize {
    events
        .iter()
        .zip(&batch.payloads)
        .map(|(new, payload)| {
            es_core::limits::check_event(
                new.event.event_type(),
                new.event.schema_version(),
                payload,
                &new.metadata,
            )
            .unwrap_or(usize::MAX)
        })
        .fold(0, usize::saturating_add)
}

mod commit;
