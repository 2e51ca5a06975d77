//! Waking subscribers: directly in this process, through LISTEN/NOTIFY across processes.
//!
//! A `NOTIFY` inside the append's transaction would take PostgreSQL's notification lock at
//! every commit and serialise all appends. Instead, an append bumps an in-process counter
//! (waking this process's subscribers at once) and, when notifications are on, pokes a
//! background task that sends one `NOTIFY` after the commit for any number of appends that
//! came in while the previous one was on its way. A listener task turns notifications from
//! other processes into bumps of the same counter. Subscribers also poll, so a lost
//! notification only delays them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use es_core::Backoff;

use crate::checkout::{Checkout, StorePool, within};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, SqlStr};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// The wake-up machinery of one store.
pub(crate) struct Wakeups {
    /// Bumped whenever events may have been committed.
    counter: Arc<watch::Sender<u64>>,
    /// Pokes the notifier task; `None` when notifications are off.
    notifier: Option<Arc<Notify>>,
    notifier_task: Mutex<Option<JoinHandle<()>>>,
    listener_task: Mutex<Option<JoinHandle<()>>>,
    pool: StorePool,
    channel: Arc<str>,
    /// `sql/notify.sql`.
    statement: SqlStr,
    /// Dropped with the store, which stops its background tasks.
    shutdown: watch::Sender<()>,
}

impl Wakeups {
    pub(crate) fn new(pool: StorePool, channel: Arc<str>, statement: SqlStr, notify: bool) -> Self {
        Self {
            counter: Arc::new(watch::Sender::new(0)),
            notifier: notify.then(|| Arc::new(Notify::new())),
            notifier_task: Mutex::new(None),
            listener_task: Mutex::new(None),
            pool,
            channel,
            statement,
            shutdown: watch::Sender::new(()),
        }
    }

    pub(crate) fn notifies(&self) -> bool {
        self.notifier.is_some()
    }

    /// Events were committed by this process.
    pub(crate) fn appended(&self) {
        bump(&self.counter);
        if let Some(notifier) = &self.notifier {
            self.keep_running(&self.notifier_task, |shutdown| {
                notify_loop(
                    self.pool.clone(),
                    Arc::clone(&self.channel),
                    self.statement.clone(),
                    Arc::clone(notifier),
                    shutdown,
                )
            });
            notifier.notify_one();
        }
    }

    /// A receiver that changes whenever events may have been committed, by this process or
    /// (through notifications) another.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.keep_running(&self.listener_task, |shutdown| {
            listen_loop(
                PgPool::clone(&self.pool),
                Arc::clone(&self.channel),
                Arc::clone(&self.counter),
                shutdown,
            )
        });
        self.counter.subscribe()
    }

    /// Makes sure a background task runs: spawns it if it never ran or has ended (its
    /// runtime may have shut down, as a runtime per test or per request does). Without a
    /// Tokio runtime at hand it is left for a later call: the store works without its
    /// tasks, subscribers then rely on polling.
    fn keep_running<F, T>(&self, slot: &Mutex<Option<JoinHandle<()>>>, task: T)
    where
        T: FnOnce(watch::Receiver<()>) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        // A panic while holding this lock leaves a handle or none: both are usable.
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|handle| !handle.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        *slot = Some(runtime.spawn(task(self.shutdown.subscribe())));
    }
}

fn bump(counter: &watch::Sender<u64>) {
    counter.send_modify(|n| *n = n.wrapping_add(1));
}

/// How long the notifier gathers appends before it notifies. A `NOTIFY` is a transaction
/// with a commit of its own, which competes with the appends for the log flush; gathering
/// for a moment turns thousands of appends a second into a few hundred notifications, at
/// the cost of this much delay for subscribers in other processes.
const NOTIFY_GATHER: Duration = Duration::from_millis(2);

/// How long a notification may take before it is given up.
const NOTIFY_DEADLINE: Duration = Duration::from_secs(5);

/// Sends a `NOTIFY` for every burst of appends, outside their transactions.
async fn notify_loop(
    pool: StorePool,
    channel: Arc<str>,
    statement: SqlStr,
    poke: Arc<Notify>,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            () = poke.notified() => {}
        }
        // Appends poking meanwhile leave one permit: they are covered by this notification
        // or, at the latest, the next.
        tokio::time::sleep(NOTIFY_GATHER).await;
        // A notification lost to a silent network only delays other processes (they poll):
        // give up on it rather than hold a connection for it.
        let sent = within(Some(NOTIFY_DEADLINE), async {
            let mut checkout = Checkout::take(&pool).await?;
            sqlx::query(statement.clone())
                .bind(&*channel)
                .execute(&mut *checkout)
                .await?;
            checkout.finish();
            Ok(())
        })
        .await;
        if let Err(error) = sent {
            // Other processes' subscribers fall back on polling; nothing is lost.
            tracing::debug!(
                error = &error as &dyn std::error::Error,
                "cannot send event notification"
            );
        }
    }
}

/// Listens for other processes' notifications and turns them into wake-ups, reconnecting
/// whenever the connection drops.
async fn listen_loop(
    pool: PgPool,
    channel: Arc<str>,
    counter: Arc<watch::Sender<u64>>,
    mut shutdown: watch::Receiver<()>,
) {
    // Short pauses: while it is away, other processes' subscribers fall back on polling.
    const RETRY: Backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
    let mut failures = 0;
    loop {
        let connected = async {
            // On a connection of its own, not one of the pool's: a listener keeps its
            // connection for good, which would starve a small pool.
            let own = PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with((*pool.connect_options()).clone());
            let mut listener = PgListener::connect_with(&own).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = shutdown.changed() => return,
            connected = connected => match connected {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(error = &error as &dyn std::error::Error, "cannot listen for event notifications; retrying");
                    failures += 1;
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        () = tokio::time::sleep(RETRY.pause(failures)) => {}
                    }
                    continue;
                }
            },
        };
        failures = 0;
        // Notifications sent while no one listened are gone: have everyone look.
        bump(&counter);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                received = listener.try_recv() => match received {
                    Ok(Some(_)) => {
                        tracing::trace!("event notification from another process");
                        bump(&counter);
                    }
                    // The connection dropped; the next `try_recv` reconnects.
                    Ok(None) => bump(&counter),
                    Err(error) => {
                        tracing::warn!(error = &error as &dyn std::error::Error, "event notification listener failed; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}
