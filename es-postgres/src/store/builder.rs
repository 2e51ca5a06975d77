//! Configuring a [`PgEventStore`]: [`PgEventStoreBuilder`], and [`PgPoolSettings`] for a
//! store that opens its own pool.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::checkout::StorePool;
use crate::error::PgStoreError;
use crate::health::ReaderHealth;
use crate::inline::PgInlineProjection;
use crate::inner::Inner;
use crate::redact::{redact, without_unknown_parameters};
use crate::schema::PgSchemaName;
use crate::sql::Statements;
use crate::store::PgEventStore;
use crate::wakeup::Wakeups;

/// Configures a [`PgEventStore`], on a pool of yours ([`PgEventStore::builder`]) or on
/// one it opens with [`PgPoolSettings`] ([`PgEventStore::builder_for_url`]).
///
/// ```no_run
/// use es_postgres::PgEventStore;
/// use std::time::Duration;
///
/// # async fn example(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let store = PgEventStore::builder(pool)
///     .schema("billing_events")?
///     .poll_interval(Duration::from_millis(250))
///     .build();
/// store.migrate().await?;
///
/// let own_pool = PgEventStore::builder_for_url("postgres://app@db/app")?
///     .statement_timeout(Some(Duration::from_secs(5)))
///     .max_connections(20)
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
pub struct PgEventStoreBuilder<C = PgPool> {
    connection: C,
    reply_timeout: Option<Option<Duration>>,
    schema: PgSchemaName,
    notify: bool,
    poll_interval: Duration,
    page_size: i64,
    inline: Vec<Arc<dyn PgInlineProjection>>,
    coalesce: Option<(usize, usize)>,
    /// [`PgEventStoreBuilder::keep_connections`] (`None`: the default for the kind of
    /// pool).
    keep: Option<Option<Duration>>,
}

impl<C: fmt::Debug> fmt::Debug for PgEventStoreBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgEventStoreBuilder")
            .field("connection", &self.connection)
            .field("schema", &self.schema)
            .field("notify", &self.notify)
            .field("poll_interval", &self.poll_interval)
            .field("page_size", &self.page_size)
            .field("coalesce", &self.coalesce)
            .field("keep", &self.keep)
            .field(
                "inline",
                &self
                    .inline
                    .iter()
                    .map(|p| p.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl<C> PgEventStoreBuilder<C> {
    pub(crate) fn new(connection: C) -> Self {
        Self {
            connection,
            reply_timeout: None,
            schema: PgSchemaName::default(),
            notify: true,
            poll_interval: Duration::from_secs(1),
            page_size: 2_000,
            inline: Vec::new(),
            coalesce: None,
            keep: None,
        }
    }

    /// Keeps the connection of each finished call out of the pool for the store's next
    /// call, for at most `keep` unused; `None` (or zero) keeps none, so every connection
    /// goes back to the pool after each call.
    ///
    /// sqlx checks each connection with a round trip as it goes back to its pool, so
    /// through the pool every call costs the server a second round trip, and a call that
    /// follows at once finds the connection still out being checked. A connection kept at
    /// hand skips that check, and the pool's own hooks too (`before_acquire`,
    /// `after_release`: it does not go through the pool between calls). At most one
    /// connection fewer than the pool's maximum is kept, none while the pool has no
    /// connection idle and no room for another (a caller may be waiting for it), and each
    /// goes back to the pool once unused for `keep` (at most half the pool's acquire
    /// timeout), at once when the pool is closed, or once kept for longer than the pool's
    /// `max_lifetime` (counted from when it was first kept: sqlx does not say how old a
    /// connection is, so one may live up to about twice that). A call that breaks its
    /// connection (no reply, a session the server ended, a row that did not decode)
    /// closes it rather than keeping it. A kept connection is not idle in the pool's
    /// count, so a caller of [`PgEventStore::pool`] may wait up to `keep` for it. None is
    /// kept on a current-thread runtime (the task that gives them back would run only
    /// while that runtime is driven).
    ///
    /// Default: on a pool the store opens,
    /// [`PgPoolSettings::DEFAULT_KEEP_CONNECTIONS`] (100 ms), never longer than
    /// [`ping_after_idle`](PgEventStoreBuilder::ping_after_idle) (a kept connection goes
    /// out unchecked), and none with options given to
    /// [`pool_options`](PgEventStoreBuilder::pool_options); on a pool of yours, none: keep
    /// `keep` within its check before use, as [`ping_after_idle`](crate::ping_after_idle)
    /// sets it, so that a connection that died while idle longer is still replaced unseen.
    ///
    /// ```no_run
    /// use es_postgres::{PgEventStore, PgPoolOptions, PgPoolSettings, ping_after_idle};
    ///
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let idle = Some(PgPoolSettings::DEFAULT_PING_AFTER_IDLE);
    /// let pool = ping_after_idle(PgPoolOptions::new().max_connections(20), idle)
    ///     .connect("postgres://app@db/app")
    ///     .await?;
    /// let store = PgEventStore::builder(pool)
    ///     .keep_connections(Some(PgPoolSettings::DEFAULT_KEEP_CONNECTIONS))
    ///     .build();
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn keep_connections(mut self, keep: Option<Duration>) -> Self {
        self.keep = Some(keep);
        self
    }

    /// Uses the schema `name` (default `es`).
    ///
    /// # Errors
    ///
    /// Fails unless `name` is a plain lowercase identifier (see [`PgSchemaName`]).
    pub fn schema(mut self, name: &str) -> Result<Self, PgStoreError> {
        self.schema = PgSchemaName::new(name)?;
        Ok(self)
    }

    /// Whether appends send a `NOTIFY` so that subscribers in *other* processes wake at
    /// once (default on). The notification goes out after the append's commit, from a
    /// background task that gathers the appends of 2 ms into one notification, so it adds
    /// no round trip to an append and takes no lock inside it. Subscribers in this process
    /// are woken directly either way, and every subscriber also polls, so turning it off
    /// only delays other processes.
    #[must_use]
    pub fn notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// How long an idle subscriber waits before looking for new events when nothing woke
    /// it (default 1 s): the bound on delay when notifications are lost or turned off.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How many rows a read fetches per query (default 2,000): larger pages mean fewer
    /// round trips, smaller ones less memory per reader (a reader holds at most two pages).
    #[must_use]
    pub fn page_size(mut self, rows: u32) -> Self {
        self.page_size = i64::from(rows.max(1));
        self
    }

    /// How long any call waits for a reply from the server before it gives up with a
    /// timeout error: for each statement, each row of a read, each step of a transaction
    /// and each inline projection's work on an append (default: the statement timeout and
    /// 5 s more on a pool the store opens, none when that has none; 60 s on a pool of
    /// yours). `None` waits as long as the server takes. The server's own deadlines end
    /// statements that run or wait too long; this one ends waits whose replies never come,
    /// as on a network that drops packets without a word. An append that gives up so may
    /// have been stored: its error is transient, and appending the same event ids again is
    /// safe and tells.
    #[must_use]
    pub fn reply_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.reply_timeout = Some(timeout.map(|t| t.max(Duration::from_millis(1))));
        self
    }

    /// Updates `projection` inside the transaction of every append it has events in (see
    /// [`PgInlineProjection`]).
    #[must_use]
    pub fn inline_projection(mut self, projection: Arc<dyn PgInlineProjection>) -> Self {
        self.inline.push(projection);
        self
    }

    /// Coalesces concurrent appends into shared transactions (default off): appends to
    /// different streams that are waiting at the same moment commit together, in one
    /// transaction of one statement, up to 64 appends per transaction and 4 transactions
    /// at once (see
    /// [`coalesce_limits`](Self::coalesce_limits)). Each append keeps its own outcome: it
    /// is stored whole or not at all, with its own expected-version check, and one
    /// append's conflict, repeat, duplicate id or archived stream never fails another (a
    /// refused append is explained by running it alone, exactly as without coalescing).
    ///
    /// What it buys: concurrent writers are bound by the server's commit rate, one commit
    /// (a WAL flush, a transaction's bookkeeping, a round trip) per append; coalesced,
    /// many appends share one, so many writers on few connections commit more appends per
    /// second than one transaction each would.
    ///
    /// Latency: no delay is added to wait for company. A batch is whatever queued while
    /// the previous transactions ran, so alone an append pays only a hop to the store's
    /// committer task and back (it then runs as the same single statement as without
    /// coalescing), and under load an append waits for the transaction before it and
    /// shares the next; appends refused in a batch (a conflict, a repeat) pay that batch
    /// and then their own statement.
    ///
    /// Why opt-in: the gain is for many concurrent writers; a process with one or two
    /// pays the hop for nothing, and with a handful of writers batches stay small (nothing
    /// waits for company), so the gain is small too; the measured figures are in the
    /// crate's benchmark `coalesce`. Appends with an inline
    /// projection that selects their events, conditional appends
    /// ([`append_if`](es_core::EventStore::append_if)) and empty appends never coalesce;
    /// nor does an append of more than 4 MiB of events (a batch holds at most that), nor
    /// one to a stream that already has an append waiting for a batch or in one, nor one
    /// that finds the committer's queue full (each runs alone at once, rather than wait).
    ///
    /// Runtimes: appends coalesce on a multi-thread Tokio runtime only. On a
    /// current-thread runtime (`#[tokio::test]`'s default) they take the normal path: the
    /// committer task would run only while that runtime's thread drives it, so one left
    /// idle would hold up appends made elsewhere. The task lives on the runtime of the
    /// append that started it; when that runtime shuts down (a runtime per test or per
    /// request), the next append starts another on its own.
    #[must_use]
    pub fn coalesce_commits(mut self, coalesce: bool) -> Self {
        self.coalesce = match (coalesce, self.coalesce) {
            (false, _) => None,
            (true, Some(limits)) => Some(limits),
            (true, None) => Some((64, 4)),
        };
        self
    }

    /// Turns coalesced commits on ([`coalesce_commits`](Self::coalesce_commits)) with at
    /// most `appends` appends per transaction and at most `transactions` coalesced
    /// transactions under way at once (each at least 1). More transactions at once give
    /// the pool's connections more to do while a commit is on its way, at the cost of
    /// smaller batches.
    #[must_use]
    pub fn coalesce_limits(mut self, appends: usize, transactions: usize) -> Self {
        self.coalesce = Some((appends.max(1), transactions.max(1)));
        self
    }

    fn finish(
        self,
        pool: PgPool,
        default_reply_timeout: Option<Duration>,
        keep: Option<Duration>,
    ) -> PgEventStore {
        let sql = Statements::new(&self.schema);
        let pool = StorePool::new(pool, keep);
        let wakeups = Wakeups::new(
            pool.clone(),
            Arc::clone(&sql.channel),
            sql.notify.clone(),
            self.notify,
        );
        PgEventStore {
            inner: Arc::new(Inner {
                pool,
                schema: self.schema,
                sql,
                page_size: self.page_size,
                poll_interval: self.poll_interval,
                wakeups,
                inline: self.inline,
                health: ReaderHealth::default(),
                reply_timeout: self.reply_timeout.unwrap_or(default_reply_timeout),
                conditional_in_transaction: std::sync::atomic::AtomicBool::new(false),
                coalesce: self.coalesce.map(|(appends, transactions)| {
                    crate::store::coalesce::Coalescer::new(appends, transactions)
                }),
            }),
        }
    }
}

impl PgEventStoreBuilder<PgPool> {
    /// The store. Run [`PgEventStore::migrate`] before first use.
    pub fn build(self) -> PgEventStore {
        let pool = self.connection.clone();
        // The pool's checks are its owner's: connections are kept only if asked.
        let keep = self.keep.flatten();
        self.finish(pool, Some(Duration::from_secs(60)), keep)
    }
}

impl PgEventStoreBuilder<PgPoolSettings> {
    /// Opens at most `connections` connections (default 10; at least 1).
    ///
    /// Every append, read page and projection batch holds one connection while it runs
    /// (a live subscription only between its reads), and a store that notifies opens one
    /// more, outside the pool, to listen. Size it for the calls the process makes at once,
    /// within the server's `max_connections` (100 by default) shared by all processes.
    #[must_use]
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.connection.pool = self.connection.pool.max_connections(connections.max(1));
        self
    }

    /// Keeps at least `connections` connections open, idle or not (default 0: none are
    /// opened before a call needs them). [`connect`](Self::connect) opens them (and fails
    /// if it cannot within the acquire timeout); the pool replaces those it closes.
    #[must_use]
    pub fn min_connections(mut self, connections: u32) -> Self {
        self.connection.pool = self.connection.pool.min_connections(connections);
        self
    }

    /// Closes a connection left idle this long (default 10 min), down to
    /// [`min_connections`](Self::min_connections); `None` keeps idle connections open.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connection.pool = self.connection.pool.idle_timeout(timeout);
        self
    }

    /// Closes (and replaces when needed) a connection once it has been open this long
    /// (default 30 min), so that none outlives a proxy's or the server's own limits and
    /// memory a session grew is given back; `None` keeps connections for good.
    #[must_use]
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.connection.pool = self.connection.pool.max_lifetime(lifetime);
        self
    }

    /// Opens the pool with `options` instead of the store's (for example to add an
    /// `after_connect` hook): its size, acquire timeout, idle timeout, lifetime and
    /// checks before use are then those of `options` (sqlx's `PgPoolOptions::new()` checks
    /// a connection before every call; [`ping_after_idle`](Self::ping_after_idle) after this
    /// one restores the store's rule), and the builder's setters called after this one
    /// change them. The session deadlines
    /// ([`statement_timeout`](Self::statement_timeout) and the others) and READ COMMITTED
    /// are still set on every connection, as startup parameters: they are the store's to
    /// keep. The first connection is still tried once, directly, within `options`' acquire
    /// timeout.
    ///
    /// ```no_run
    /// use es_postgres::{PgEventStore, PgPoolOptions};
    /// use std::time::Duration;
    ///
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = PgEventStore::builder_for_url("postgres://app@db/app")?
    ///     .pool_options(
    ///         PgPoolOptions::new()
    ///             .max_connections(32)
    ///             .min_connections(4)
    ///             .test_before_acquire(false),
    ///     )
    ///     .connect()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn pool_options(mut self, options: PgPoolOptions) -> Self {
        // The caller's checks, which `Debug` cannot read back (a hook is opaque).
        self.connection.ping_after_idle = None;
        self.connection.pool = options;
        self
    }

    /// Checks a pooled connection with a round trip before a call uses it only when it
    /// has sat idle at least `idle` (default 1 s); `Some(Duration::ZERO)` checks before
    /// every call (sqlx's own default), `None` never.
    ///
    /// A connection idle for less than `idle` answered a call that long ago; checking it
    /// again before each call would cost every statement a second round trip (bare
    /// single-row inserts through a sqlx pool ran 14% faster without it, one run on
    /// 2026-12-03, one connection over loopback). What the check still catches is a
    /// connection that died while idle longer (a server restart in a quiet moment, a
    /// proxy's idle cut), which the pool then replaces unseen.
    ///
    /// A connection the store keeps at hand between calls
    /// ([`keep_connections`](PgEventStoreBuilder::keep_connections)) is never kept longer
    /// than `idle`, so it too goes out unchecked only within `idle` of its last call.
    ///
    /// What it does not catch:
    /// - A connection that died within `idle` of its last call (a restart under load):
    ///   its next call fails, transient, as the calls under way at that moment do, and
    ///   the pool opens a new connection for the one after. With
    ///   [`coalesce_commits`](PgEventStoreBuilder::coalesce_commits), that call may be a
    ///   shared statement: every append of the batch then fails as one whose reply was
    ///   lost (nothing was stored; appending the same event ids again says so).
    /// - sqlx's maintenance round (every `idle_timeout` or `max_lifetime`, whichever is
    ///   shorter: 10 min by default) restarts the idle clock of the connections it keeps
    ///   without a round trip, so for `idle` after each round a connection idle for a
    ///   whole period goes out unchecked.
    /// - A connection whose server vanished without closing it (a half-open network)
    ///   waits for the reply deadline instead of the acquire timeout.
    ///
    /// This replaces any `before_acquire` hook of [`pool_options`](Self::pool_options).
    /// A failed check is logged by sqlx as a warning ("error from `before_acquire`").
    #[must_use]
    pub fn ping_after_idle(mut self, idle: Option<Duration>) -> Self {
        self.connection.ping_after_idle = Some(idle);
        self.connection.pool = ping_after_idle(self.connection.pool, idle);
        self
    }

    /// Ends any statement that runs longer than this (default 30 s), with a
    /// [`StoreErrorKind::Timeout`](es_core::StoreErrorKind::Timeout) error; `None` for
    /// no limit. Migrations run without it (a schema change on a large table may take
    /// long).
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connection.statement_timeout = timeout;
        self
    }

    /// Ends any statement that waits longer than this for a lock (default 10 s), with a
    /// timeout error: an append stuck behind a lock someone holds fails instead of
    /// hanging. `None` for no limit.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connection.lock_timeout = timeout;
        self
    }

    /// Has the server end a session left idle inside a transaction for longer than this
    /// (default 60 s), so that no forgotten transaction holds back the log's readers for
    /// good. `None` for no limit.
    #[must_use]
    pub fn idle_in_transaction_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connection.idle_in_transaction_timeout = timeout;
        self
    }

    /// How long a call waits for a connection when all are busy (default 5 s) before it
    /// fails with a timeout error; also how long [`connect`](Self::connect) waits for the
    /// server's first answer.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.connection.pool = self.connection.pool.acquire_timeout(timeout);
        self
    }

    /// Connects (once, at once, so that a server that is down is reported now) and gives
    /// the store. Run [`PgEventStore::migrate`] before first use.
    ///
    /// # Errors
    ///
    /// [`PgStoreError::Connect`] if the server cannot be reached.
    pub async fn connect(self) -> Result<PgEventStore, PgStoreError> {
        let settings = &self.connection;
        let options = settings.connect_options();
        let connect_error = |source| PgStoreError::Connect {
            url: settings.description.clone(),
            source,
        };
        // One direct attempt first: the pool would retry a refused connection until its
        // acquire timeout, and a server that is down should be reported at once (and one
        // that does not answer, within the acquire timeout).
        let attempt = async {
            sqlx::postgres::PgConnection::connect_with(&options)
                .await?
                .close()
                .await
        };
        let acquire_timeout = settings.pool.get_acquire_timeout();
        tokio::time::timeout(acquire_timeout, attempt)
            .await
            .unwrap_or_else(|_| Err(crate::error::no_reply(acquire_timeout)))
            .map_err(connect_error)?;
        // A pool of no connections would only time out; more kept open than allowed, never
        // be full.
        let max = settings.pool.get_max_connections().max(1);
        let min = settings.pool.get_min_connections().min(max);
        let pool = (settings.pool.clone())
            .max_connections(max)
            .min_connections(min);
        // sqlx's lazy pool opens its minimum only at its first maintenance round (up to the
        // idle timeout later): a minimum asked for is opened now, as the server answered.
        let pool = if min > 0 {
            pool.connect_with(options).await.map_err(connect_error)?
        } else {
            pool.connect_lazy_with(options)
        };
        let reply = settings
            .statement_timeout
            .map(|t| t + Duration::from_secs(5));
        // A connection kept at hand goes out unchecked, so never for longer than the idle
        // check allows; with the checks of the caller's pool options, only if asked.
        let keep = match settings.ping_after_idle {
            None => self.keep.flatten(),
            Some(idle) => {
                let keep = self
                    .keep
                    .unwrap_or(Some(PgPoolSettings::DEFAULT_KEEP_CONNECTIONS));
                match idle {
                    Some(idle) => keep.map(|keep| keep.min(idle)),
                    None => keep,
                }
            }
        };
        Ok(self.finish(pool, reply, keep))
    }
}

/// `options` with the store's rule for checking a pooled connection before a call: only
/// once it has sat idle at least `idle` (never for `None`), in place of sqlx's check before
/// every call, which costs each statement a second round trip.
///
/// A store that opens its own pool follows this rule (with
/// [`PgPoolSettings::DEFAULT_PING_AFTER_IDLE`]; see
/// [`PgEventStoreBuilder::ping_after_idle`] for what the check still catches and what it
/// misses); give
/// a pool of your own the same with this:
///
/// ```no_run
/// use es_postgres::{PgEventStore, PgPoolOptions, PgPoolSettings, ping_after_idle};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let idle = Some(PgPoolSettings::DEFAULT_PING_AFTER_IDLE);
/// let pool = ping_after_idle(PgPoolOptions::new().max_connections(20), idle)
///     .connect("postgres://app@db/app")
///     .await?;
/// let store = PgEventStore::builder(pool).build();
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
///
/// It sets the options' `before_acquire` hook, replacing one set before.
pub fn ping_after_idle(options: PgPoolOptions, idle: Option<Duration>) -> PgPoolOptions {
    options
        .test_before_acquire(false)
        .before_acquire(move |connection, meta| {
            Box::pin(async move {
                if idle.is_some_and(|idle| meta.idle_for >= idle) {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
}

/// The pool a store opens for itself ([`PgEventStore::builder_for_url`]): its size and the
/// deadlines of its sessions, which the server enforces at no cost to each statement.
///
/// | Setting | Default |
/// |---|---|
/// | [`max_connections`](PgEventStoreBuilder::max_connections) | 10 |
/// | [`min_connections`](PgEventStoreBuilder::min_connections) | 0 |
/// | [`acquire_timeout`](PgEventStoreBuilder::acquire_timeout) | 5 s |
/// | [`idle_timeout`](PgEventStoreBuilder::idle_timeout) | 10 min |
/// | [`max_lifetime`](PgEventStoreBuilder::max_lifetime) | 30 min |
/// | [`ping_after_idle`](PgEventStoreBuilder::ping_after_idle) | 1 s |
/// | [`keep_connections`](PgEventStoreBuilder::keep_connections) | 100 ms |
/// | [`statement_timeout`](PgEventStoreBuilder::statement_timeout) | 30 s |
/// | [`lock_timeout`](PgEventStoreBuilder::lock_timeout) | 10 s |
/// | [`idle_in_transaction_timeout`](PgEventStoreBuilder::idle_in_transaction_timeout) | 60 s |
///
/// Any other pool option (an `after_connect` hook...) through
/// [`pool_options`](PgEventStoreBuilder::pool_options), with sqlx's [`PgPoolOptions`]
/// (re-exported by this crate). Ten connections serve a process that makes a few calls at
/// once and leave room for ten such processes on a server with PostgreSQL's default
/// `max_connections` of 100; a process that runs more at once (many projection runners,
/// many concurrent commands) needs more, or its calls wait for a connection, up to the
/// acquire timeout.
///
/// Sessions also run at READ COMMITTED whatever the database's default: the store's
/// statements are written for it (the unique constraints arbitrate between writers), and
/// under SERIALIZABLE the server would abort unrelated writers as serialization failures.
///
/// On a pool of your own ([`PgEventStore::builder`]), the deadlines are the pool's: set
/// them in its connect options, for example
/// `options.options([("statement_timeout", "30s"), ("lock_timeout", "10s")])`.
#[derive(Clone)]
pub struct PgPoolSettings {
    options: PgConnectOptions,
    /// The URL without its secrets, for messages.
    description: String,
    /// The pool's own options: size, acquire timeout, idle timeout, lifetime.
    pool: PgPoolOptions,
    /// What [`PgEventStoreBuilder::ping_after_idle`] set (the outer `None`: the checks
    /// of options given to [`PgEventStoreBuilder::pool_options`] since), for `Debug`:
    /// the pool's hook cannot be read back.
    ping_after_idle: Option<Option<Duration>>,
    statement_timeout: Option<Duration>,
    lock_timeout: Option<Duration>,
    idle_in_transaction_timeout: Option<Duration>,
}

impl fmt::Debug for PgPoolSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPoolSettings")
            .field("url", &self.description)
            .field("max_connections", &self.pool.get_max_connections())
            .field("min_connections", &self.pool.get_min_connections())
            .field("acquire_timeout", &self.pool.get_acquire_timeout())
            .field("idle_timeout", &self.pool.get_idle_timeout())
            .field("max_lifetime", &self.pool.get_max_lifetime())
            .field(
                "ping_after_idle",
                match &self.ping_after_idle {
                    Some(idle) => idle as &dyn fmt::Debug,
                    None => &"as the pool options given",
                },
            )
            .field("statement_timeout", &self.statement_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .finish()
    }
}

impl PgPoolSettings {
    /// How long a pooled connection may sit idle before a call checks it first: the
    /// default of [`PgEventStoreBuilder::ping_after_idle`].
    pub const DEFAULT_PING_AFTER_IDLE: Duration = Duration::from_secs(1);

    /// How long a store keeps the connection of a finished call at hand for its next call
    /// by default ([`PgEventStoreBuilder::keep_connections`]): long enough for calls that
    /// follow one another closely, short enough that another user of the pool waits
    /// little for a connection kept unused.
    pub const DEFAULT_KEEP_CONNECTIONS: Duration = Duration::from_millis(100);

    pub(crate) fn parse(url: &str) -> Result<Self, PgStoreError> {
        let description = redact(url);
        let (url, ignored) = without_unknown_parameters(url);
        if !ignored.is_empty() {
            tracing::warn!(parameters = ?ignored, url = %description, "ignoring connection parameters sqlx does not read");
        }
        let options = url
            .parse::<PgConnectOptions>()
            .map_err(|source| PgStoreError::Connect {
                url: description.clone(),
                source,
            })?;
        Ok(Self {
            options,
            description,
            // sqlx's defaults but for the size, the acquire timeout (its 30 s would leave a
            // caller waiting long for a pool that is exhausted) and the check before use
            // (sqlx's costs every statement a round trip); written out, so that the
            // documented defaults do not move with sqlx's.
            pool: ping_after_idle(
                PgPoolOptions::new()
                    .max_connections(10)
                    .min_connections(0)
                    .acquire_timeout(Duration::from_secs(5))
                    .idle_timeout(Some(Duration::from_secs(10 * 60)))
                    .max_lifetime(Some(Duration::from_secs(30 * 60))),
                Some(PgPoolSettings::DEFAULT_PING_AFTER_IDLE),
            ),
            ping_after_idle: Some(Some(PgPoolSettings::DEFAULT_PING_AFTER_IDLE)),
            statement_timeout: Some(Duration::from_secs(30)),
            lock_timeout: Some(Duration::from_secs(10)),
            idle_in_transaction_timeout: Some(Duration::from_secs(60)),
        })
    }

    /// The connect options with the session settings, as startup parameters: the server
    /// applies them to every session, with no statement of their own.
    fn connect_options(&self) -> PgConnectOptions {
        let millis = |timeout: Option<Duration>| {
            // 0 turns a PostgreSQL timeout off.
            timeout
                .map_or(0, |t| t.as_millis().clamp(1, i32::MAX as u128))
                .to_string()
        };
        self.options.clone().options([
            ("default_transaction_isolation", "read committed".to_owned()),
            ("statement_timeout", millis(self.statement_timeout)),
            ("lock_timeout", millis(self.lock_timeout)),
            (
                "idle_in_transaction_session_timeout",
                millis(self.idle_in_transaction_timeout),
            ),
        ])
    }
}
