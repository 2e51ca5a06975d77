//! [`Checkout`]: a connection taken from the pool for one call, which goes back only if the
//! call finished; and [`StorePool`], which keeps the connections of finished calls at hand
//! for the store's next calls.
//!
//! A call cut short (by the reply deadline, or a caller that went away) may leave a
//! statement in flight and its replies unread. sqlx would pool such a connection again
//! after checking it with a ping that has no deadline of its own: on a network gone silent
//! that ping waits as long as TCP does (a quarter of an hour), holding the pool slot, and
//! a store whose calls all time out would keep every slot for that long. So a checkout
//! that did not finish closes its connection instead; the server ends whatever the session
//! had open. That costs a reconnect after a cut, and nothing otherwise.
//!
//! # Connections kept at hand
//!
//! sqlx checks every connection with a round trip as it goes back to its pool, whatever
//! the pool's options, in a task of its own: each call costs the server a second round
//! trip, and a call that follows at once finds the connection still out being checked (so
//! the pool opens or hands out another). A call that finished has read its replies, so
//! there is nothing for that check to flush (sqlx reads whatever is left before the next
//! statement anyway); what it would catch is a connection that died since, which the
//! pool's check after idling catches too. So a store keeps the connection of a finished
//! call out of sqlx's pool, for its next call
//! ([`keep_connections`](crate::PgEventStoreBuilder::keep_connections), 100 ms by default
//! on a pool it opens itself, never longer than its
//! [`ping_after_idle`](crate::PgEventStoreBuilder::ping_after_idle)):
//!
//! - a call takes the most recently kept connection, if it was kept for less than `keep`,
//!   and uses it as it is (as the pool's own check would within its idle limit); one kept
//!   longer goes back to sqlx's pool, which checks it there, and the call takes one from
//!   the pool;
//! - a task gives back every connection kept unused for `keep`, so that a quiet store
//!   holds none (other users of the pool see them again), and all of them at once when
//!   the pool is closed, so that `close` does not wait on them;
//! - a connection is not kept when the pool has nothing idle and no room for another
//!   (someone may be waiting for one), nor past the pool's `max_lifetime` counted from
//!   when it was first kept (so that the pool retires it; sqlx does not say how old a
//!   connection is, so one may live up to about twice that), nor when its call broke it;
//! - at most one connection fewer than the pool's maximum is kept, each for at most half
//!   the pool's acquire timeout (so that another user of the pool never waits out its
//!   timeout for one the store holds unused);
//! - a kept connection is not seen by the pool's hooks (`before_acquire`,
//!   `after_release`): it does not go through the pool between the calls.
//!
//! None is kept on a current-thread runtime: the task that gives them back would run only
//! while that runtime is driven.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgDatabaseError, PgPool, PgSeverity};
use sqlx::{Connection as _, Postgres};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::JoinHandle;

use crate::error::no_reply;

/// Where a [`Checkout`] takes its connection: a pool, or the store's pool with the
/// connections it keeps at hand.
pub(crate) trait Source {
    /// The pool behind it.
    fn pool(&self) -> &PgPool;

    /// The connections kept at hand, if any are.
    fn kept(&self) -> Option<&Arc<Kept>> {
        None
    }
}

impl Source for PgPool {
    fn pool(&self) -> &PgPool {
        self
    }
}

/// A store's pool and, for a pool the store opened itself, the connections its finished
/// calls left at hand (see the module docs). Clones share what is kept.
#[derive(Clone)]
pub(crate) struct StorePool {
    pool: PgPool,
    kept: Option<Arc<Kept>>,
}

impl StorePool {
    /// `pool`, keeping at hand the connections of finished calls for less than `keep`
    /// (`None` or zero: keeping none).
    pub(crate) fn new(pool: PgPool, keep: Option<Duration>) -> Self {
        let max = pool.options().get_max_connections();
        let most = usize::try_from(max).unwrap_or(usize::MAX).saturating_sub(1);
        // Another user of the pool may wait for a kept connection as long as it is kept:
        // never as long as the pool lets a caller wait.
        let longest = pool.options().get_acquire_timeout() / 2;
        let kept = keep
            .map(|keep| keep.min(longest))
            .filter(|keep| !keep.is_zero() && most > 0)
            .map(|keep| {
                Arc::new(Kept {
                    lifetime: pool.options().get_max_lifetime(),
                    pool: pool.clone(),
                    keep,
                    max,
                    most,
                    state: Mutex::default(),
                })
            });
        Self { pool, kept }
    }
}

impl Deref for StorePool {
    type Target = PgPool;

    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

impl Source for StorePool {
    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn kept(&self) -> Option<&Arc<Kept>> {
        self.kept.as_ref()
    }
}

/// The connections a store keeps out of sqlx's pool between its calls.
pub(crate) struct Kept {
    pool: PgPool,
    /// How long one is kept unused before it goes back to the pool.
    keep: Duration,
    /// The pool's `max_lifetime`.
    lifetime: Option<Duration>,
    /// The pool's `max_connections`.
    max: u32,
    /// How many are kept at most.
    most: usize,
    state: Mutex<KeptState>,
}

#[derive(Default)]
struct KeptState {
    /// The most recently kept last.
    connections: Vec<KeptConnection>,
    /// Whether the task that gives back what is kept too long is at work (it clears this
    /// as it decides to end)...
    sweeping: bool,
    /// ...and the task, which also ends when its runtime shuts down.
    sweeper: Option<JoinHandle<()>>,
}

struct KeptConnection {
    connection: PoolConnection<Postgres>,
    /// When its last call finished.
    idle_since: Instant,
    /// When it was first kept: it is at least that old.
    kept_since: Instant,
    /// The runtime it was kept on: sqlx gives a connection back to its pool through a
    /// task, so dropping one needs a runtime to spawn on (one that has shut down takes
    /// the task and drops it, which still frees the pool's slot).
    runtime: Handle,
}

impl KeptConnection {
    /// Back to the pool (which checks it, or frees its slot), from whatever context.
    fn give_back(self) {
        let _entered = Handle::try_current().is_err().then(|| self.runtime.enter());
        drop(self.connection);
    }
}

/// Gives back every connection in `connections`.
fn give_back(connections: impl IntoIterator<Item = KeptConnection>) {
    for kept in connections {
        kept.give_back();
    }
}

impl Kept {
    /// The most recently kept connection, if one was kept unused for less than `keep`
    /// (those kept longer go back to the pool, which checks them).
    fn take(&self) -> Option<(PoolConnection<Postgres>, Instant)> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = state.connections.pop()?;
        if kept.idle_since.elapsed() < self.keep && !self.pool.is_closed() {
            return Some((kept.connection, kept.kept_since));
        }
        // The others were kept longer still.
        let stale = std::mem::take(&mut state.connections);
        drop(state);
        kept.give_back();
        give_back(stale);
        None
    }

    /// Keeps `connection`, whose call finished, unless the store keeps as many as it may,
    /// the pool is closed or has nothing idle and no room (someone may be waiting for a
    /// connection), the connection is past the pool's lifetime, or no task could give it
    /// back in time: then it goes back to the pool.
    fn keep(self: &Arc<Self>, connection: PoolConnection<Postgres>, kept_since: Instant) {
        let past_lifetime = self
            .lifetime
            .is_some_and(|lifetime| kept_since.elapsed() >= lifetime);
        let runtime = Handle::try_current()
            .ok()
            .filter(|runtime| matches!(runtime.runtime_flavor(), RuntimeFlavor::MultiThread));
        // A finished call ended its transactions; one still open is not handed to another.
        let full = self.pool.size() >= self.max && self.pool.num_idle() == 0;
        let unfit =
            past_lifetime || full || connection.is_in_transaction() || self.pool.is_closed();
        let (Some(runtime), false) = (runtime, unfit) else {
            return;
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.connections.len() >= self.most {
            drop(state);
            return;
        }
        state.connections.push(KeptConnection {
            connection,
            idle_since: Instant::now(),
            kept_since,
            runtime: runtime.clone(),
        });
        let sweeper_gone = state.sweeper.as_ref().is_none_or(JoinHandle::is_finished);
        if state.sweeping && !sweeper_gone {
            return;
        }
        state.sweeping = true;
        drop(state);
        // Spawned without the lock: a runtime shutting down drops the task at once, on
        // this thread, and its guard takes the lock. The guard is the task's from its
        // creation, so a task dropped unpolled still gives everything back. (Two keeps
        // racing here may start two sweepers; the second ends with the first.)
        let guard = SweepGuard {
            kept: Arc::downgrade(self),
            ended: false,
        };
        let sweeper = runtime.spawn(sweep(guard));
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sweeper = Some(sweeper);
    }
}

/// Gives back to the pool every connection kept unused for `keep`, until none is kept;
/// all of them at once when the pool closes.
async fn sweep(mut guard: SweepGuard) {
    loop {
        let Some(strong) = guard.kept.upgrade() else {
            guard.ended = true;
            return;
        };
        let closed = strong.pool.close_event();
        let wait = {
            let state = strong.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.connections.first().map_or(strong.keep, |oldest| {
                strong.keep.saturating_sub(oldest.idle_since.elapsed())
            })
        };
        // Not held across the wait: a store dropped meanwhile ends the task.
        drop(strong);
        let closing = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            _ = closed => true,
        };
        let Some(strong) = guard.kept.upgrade() else {
            guard.ended = true;
            return;
        };
        let mut state = strong.state.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = if closing {
            state.connections.len()
        } else {
            state
                .connections
                .partition_point(|kept| kept.idle_since.elapsed() >= strong.keep)
        };
        let given_back: Vec<_> = state.connections.drain(..stale).collect();
        let done = state.connections.is_empty();
        if done {
            state.sweeping = false;
            guard.ended = true;
        }
        drop(state);
        give_back(given_back);
        if done {
            return;
        }
    }
}

/// The sweeper's: a sweeper that did not end of itself (cancelled as its runtime shut
/// down, or dropped before it first ran) gives back whatever is kept, which would
/// otherwise wait for the store's next call, or for ever, holding the pool's slots (and
/// `close` with them).
struct SweepGuard {
    kept: Weak<Kept>,
    ended: bool,
}

impl Drop for SweepGuard {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let Some(kept) = self.kept.upgrade() else {
            return;
        };
        let mut state = kept.state.lock().unwrap_or_else(PoisonError::into_inner);
        let connections = std::mem::take(&mut state.connections);
        state.sweeping = false;
        drop(state);
        give_back(connections);
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        // Each on the runtime it was kept on: a store may be dropped outside any runtime
        // (a synchronous `main` between two `block_on`s), where sqlx could not give it back.
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        give_back(state.connections.drain(..));
    }
}

/// A pooled connection that is closed, not pooled, unless [`finish`](Checkout::finish)ed.
pub(crate) struct Checkout {
    /// `None` only once dropped.
    connection: Option<PoolConnection<Postgres>>,
    finished: bool,
    /// Where it goes once finished, and since when it has been kept at hand.
    kept: Option<(Arc<Kept>, Instant)>,
}

impl Checkout {
    /// A connection from `source`: one kept at hand, or one from the pool (waiting as long
    /// as the pool's acquire timeout).
    pub(crate) async fn take(source: &(impl Source + ?Sized)) -> Result<Self, sqlx::Error> {
        if let Some(kept) = source.kept()
            && let Some((connection, since)) = kept.take()
        {
            return Ok(Self {
                connection: Some(connection),
                finished: false,
                kept: Some((Arc::clone(kept), since)),
            });
        }
        // Boxed, as sqlx's own pool calls box it: the acquire's state is kilobytes, which
        // would otherwise sit in every future that takes a connection.
        let connection = Box::pin(source.pool().acquire()).await?;
        Ok(Self {
            connection: Some(connection),
            finished: false,
            kept: source.kept().map(|kept| (Arc::clone(kept), Instant::now())),
        })
    }

    /// The call finished: the connection may serve others once this is dropped.
    pub(crate) fn finish(&mut self) {
        self.finished = true;
    }

    /// The call ended with `error`: the connection may serve others once this is dropped
    /// if the error leaves it usable (a statement the server refused); one that broke (no
    /// reply, a dead socket, a session the server ended) is closed. Kept at hand, a broken
    /// connection would fail call after call: nothing would check it before the next.
    pub(crate) fn finish_after(&mut self, error: &sqlx::Error) {
        if leaves_connection_usable(error) {
            self.finish();
        }
    }

    // The connection is taken out only by `drop`, so no call here ever finds it gone.
    fn connection(&self) -> &PoolConnection<Postgres> {
        match &self.connection {
            Some(connection) => connection,
            None => unreachable!("a checkout has its connection until dropped"),
        }
    }

    fn connection_mut(&mut self) -> &mut PoolConnection<Postgres> {
        match &mut self.connection {
            Some(connection) => connection,
            None => unreachable!("a checkout has its connection until dropped"),
        }
    }
}

/// Whether a connection can take another statement after `error`: after the server's
/// refusal of one (unless it ended the session with it, severity `FATAL` or `PANIC`: an
/// administrator's termination, a shutdown, an idle session timeout), or a fetch that
/// found no row (read to its end), yes; after anything else (no reply, a dead socket, a
/// reply not understood, a row that did not decode with more perhaps unread), no.
fn leaves_connection_usable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => error
            .try_downcast_ref::<PgDatabaseError>()
            .is_none_or(|error| !matches!(error.severity(), PgSeverity::Fatal | PgSeverity::Panic)),
        sqlx::Error::RowNotFound => true,
        _ => false,
    }
}

impl Deref for Checkout {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.connection()
    }
}

impl DerefMut for Checkout {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.connection_mut()
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        if !self.finished {
            connection.close_on_drop();
        } else if let Some((kept, since)) = self.kept.take() {
            kept.keep(connection, since);
        }
    }
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("finished", &self.finished)
            .finish()
    }
}

/// What `future` gives, unless `deadline` passes first (`None`; whatever the future held
/// is then dropped: a [`Checkout`] or a transaction closes its connection).
pub(crate) async fn before<F: Future>(deadline: Option<Duration>, future: F) -> Option<F::Output> {
    match deadline {
        None => Some(future.await),
        Some(deadline) => tokio::time::timeout(deadline, future).await.ok(),
    }
}

/// `future`, unless `deadline` passes first: then a [`no_reply`] error.
pub(crate) async fn within<T>(
    deadline: Option<Duration>,
    future: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    before(deadline, future)
        .await
        .unwrap_or_else(|| Err(no_reply(deadline.unwrap_or_default())))
}
