//! The load that fault tests run against a store while its server is being faulted (backends
//! terminated, the server restarted), and the checks that the store stayed a system of
//! record through it:
//!
//! - writers execute deposits through [`Repository`], each command with a command id of
//!   its own, retried with the same id after an error (a command that failed is
//!   *unknown*: it may or may not have been recorded, and the retry finds out);
//! - live subscribers ([`EventStore::subscribe`]) record every event they receive;
//! - a [`ProjectionRunner`] of a transactional projection writes one row per event.
//!
//! [`Load::finish`] then checks, from connections of its own: every acknowledged command's
//! events are stored exactly once, no stream has a version gap, every subscriber received
//! every stored event exactly once in log order (a `read_all`), the projection wrote every
//! event once, and no session is left inside a transaction.
//!
//! Shared by `tests/restart.rs` and `examples/soak.rs` through `#[path]`.

#![allow(dead_code, reason = "each user takes a different part")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a failed step is a failed test"
)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use es_core::error::BoxError;
use es_core::{
    CommandContext, EventEnvelope, EventFilter, EventStore as _, Position, ProjectionRunner,
    RawEvent, Repository, RetryPolicy,
};
use es_postgres::{PgEventStore, PgProjection, PgTransactionalProjection};
use es_testkit::fixture::{Account, AccountCommand};
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

#[path = "fault_report.rs"]
mod report;

use report::{Acked, Failures, cause, check_commands, check_streams, command_failure};
pub(crate) use report::{Recovery, Report};

/// The longest any wait may take: a fault test must never hang.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// How much load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// Tasks executing commands.
    pub(crate) writers: usize,
    /// Accounts they share (two writers on one account also race for versions).
    pub(crate) accounts: usize,
    /// Live subscribers.
    pub(crate) subscribers: usize,
}

/// When things happened, in order (each instant is taken under the lock).
#[derive(Default)]
struct Times(Mutex<Vec<Instant>>);

impl Times {
    fn record(&self) {
        let mut times = self.0.lock().unwrap();
        times.push(Instant::now());
    }

    fn first_after(&self, moment: Instant) -> Option<Instant> {
        let times = self.0.lock().unwrap();
        times.get(times.partition_point(|t| *t <= moment)).copied()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Progress as it happens, for recovery times.
#[derive(Default)]
struct Progress {
    acks: Times,
    deliveries: Times,
    handled: Times,
}

#[derive(Default)]
struct WriterLog {
    acked: Vec<Acked>,
    /// Commands whose last attempt failed when the load stopped.
    unknown: Vec<Uuid>,
    errors: Failures,
    /// Retries that found their command recorded by an attempt that had reported an error.
    recorded_despite_error: u64,
}

async fn writer(
    repository: Repository<Account, PgEventStore>,
    account: String,
    index: u64,
    stop: watch::Receiver<bool>,
    progress: Arc<Progress>,
) -> WriterLog {
    let mut log = WriterLog::default();
    let mut n = 0;
    while !*stop.borrow() {
        n += 1;
        let command_id = Uuid::now_v7();
        // Unique amounts, so that a stored event tells whose command it was.
        let amount = (index + 1) * 10_000_000 + n;
        let mut failed = false;
        loop {
            let context = CommandContext::new().with_command_id(command_id);
            let executed =
                repository.execute_with(&account, AccountCommand::Deposit { amount }, context);
            match tokio::time::timeout(DEADLINE, executed).await {
                Ok(Ok(outcome)) => {
                    progress.acks.record();
                    if failed && outcome.duplicate {
                        log.recorded_despite_error += 1;
                    }
                    log.acked.push(Acked {
                        command_id,
                        events: outcome.events.iter().map(|e| e.event_id).collect(),
                    });
                    break;
                }
                Ok(Err(error)) => log.errors.add(command_failure(&error), &error),
                Err(elapsed) => log.errors.add("hung".into(), &elapsed),
            }
            failed = true;
            if *stop.borrow() {
                log.unknown.push(command_id);
                break;
            }
            // The same command again, with the same id: a retry that cannot apply it twice.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    log
}

#[derive(Default)]
struct SubscriberLog {
    seen: Vec<Uuid>,
    /// Errors the subscription yielded (it is then opened again after the last event).
    errors: Vec<String>,
    /// Times the subscription ended, which it never should.
    ended: u64,
}

async fn subscriber(
    store: PgEventStore,
    mut target: watch::Receiver<Option<usize>>,
    progress: Arc<Progress>,
) -> SubscriberLog {
    let mut log = SubscriberLog::default();
    let mut after = Position::START;
    loop {
        let mut events = Box::pin(store.subscribe::<RawEvent>(after, EventFilter::all()));
        loop {
            if target
                .borrow_and_update()
                .is_some_and(|n| log.seen.len() >= n)
            {
                return log;
            }
            tokio::select! {
                item = events.next() => match item {
                    Some(Ok(envelope)) => {
                        progress.deliveries.record();
                        after = envelope.position;
                        log.seen.push(envelope.event_id);
                    }
                    Some(Err(error)) => {
                        log.errors.push(es_core::error::display_chain(&error));
                        break;
                    }
                    None => {
                        log.ended += 1;
                        break;
                    }
                },
                _ = target.changed() => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes one row per event into `es.counted` (no unique key: twice shows as two rows),
/// buffered and flushed with the batch's checkpoint.
struct Counted {
    buffer: Vec<Uuid>,
    progress: Arc<Progress>,
}

impl PgProjection for Counted {
    type Event = RawEvent;

    fn name(&self) -> &str {
        "counted"
    }

    async fn handle(
        &mut self,
        _tx: &mut PgConnection,
        envelope: &EventEnvelope<RawEvent>,
    ) -> Result<(), BoxError> {
        self.progress.handled.record();
        self.buffer.push(envelope.event_id);
        Ok(())
    }

    async fn flush(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
        let ids = std::mem::take(&mut self.buffer);
        sqlx::query("INSERT INTO es.counted (event_id) SELECT * FROM UNNEST($1::uuid[])")
            .bind(&ids)
            .execute(tx)
            .await?;
        Ok(())
    }

    fn discard(&mut self) {
        self.buffer.clear();
    }
}

/// Runs the projection until told to stop, starting it again if it ever fails.
async fn runner(
    store: PgEventStore,
    stop: watch::Receiver<bool>,
    progress: Arc<Progress>,
) -> Failures {
    let projection = Counted {
        buffer: Vec::new(),
        progress,
    };
    let mut runner = ProjectionRunner::new(
        store.clone(),
        PgTransactionalProjection::new(store, projection),
    )
    .with_batch_size(100);
    let mut failures = Failures::default();
    loop {
        let mut stopped = stop.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        match runner.run_until(shutdown).await {
            Ok(()) => return failures,
            Err(error) => failures.add(format!("runner stopped: {}", cause(&error)), &error),
        }
        if *stop.borrow() {
            return failures;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The load, running.
pub(crate) struct Load {
    url: String,
    application_name: String,
    store: PgEventStore,
    progress: Arc<Progress>,
    stop_writers: watch::Sender<bool>,
    stop_runner: watch::Sender<bool>,
    target: watch::Sender<Option<usize>>,
    writers: Vec<JoinHandle<WriterLog>>,
    subscribers: Vec<JoinHandle<SubscriberLog>>,
    runner: JoinHandle<Failures>,
}

/// A pool of `max` connections to `url` tagged `application_name`.
fn pool(url: &str, application_name: &str, max: u32) -> sqlx::PgPool {
    let options = url
        .parse::<PgConnectOptions>()
        .expect("a PostgreSQL URL")
        .application_name(application_name);
    // The checks of a pool the store opens itself: before use only after a second idle.
    es_postgres::ping_after_idle(
        PgPoolOptions::new(),
        Some(es_postgres::PgPoolSettings::DEFAULT_PING_AFTER_IDLE),
    )
    .max_connections(max)
    .connect_lazy_with(options)
}

impl Load {
    /// Migrates a store in schema `es` at `url`, opens the accounts, and starts the load.
    pub(crate) async fn start(url: &str, config: Config) -> Self {
        let application_name = format!("es-fault-load-{}", std::process::id());
        let max = u32::try_from(config.writers + config.subscribers + 4).unwrap_or(32);
        let store = PgEventStore::builder(pool(url, &application_name, max))
            .keep_connections(Some(es_postgres::PgPoolSettings::DEFAULT_KEEP_CONNECTIONS))
            .build();
        store.migrate().await.expect("migrate");
        sqlx::query("CREATE TABLE IF NOT EXISTS es.counted (event_id uuid NOT NULL)")
            .execute(store.pool())
            .await
            .expect("create the projection's table");
        // With the state cache, as a service would run it: without, every command replays
        // its whole stream and the load slows down as the streams grow.
        let repository = Repository::<Account, _>::new(store.clone())
            .with_retry_policy(
                RetryPolicy::default()
                    .with_max_attempts(1_000)
                    .with_backoff(Duration::from_micros(200), Duration::from_millis(20)),
            )
            .with_cache(64);
        let accounts: Vec<String> = (0..config.accounts).map(|a| format!("a{a}")).collect();
        for account in &accounts {
            let open = AccountCommand::Open {
                owner: "ada".into(),
            };
            repository.execute(account, open).await.expect("open");
        }
        let progress = Arc::new(Progress::default());
        let (stop_writers, stopped) = watch::channel(false);
        let writers = (0..config.writers)
            .map(|index| {
                tokio::spawn(writer(
                    repository.clone(),
                    accounts[index % accounts.len()].clone(),
                    index as u64,
                    stopped.clone(),
                    Arc::clone(&progress),
                ))
            })
            .collect();
        let (target, targets) = watch::channel(None);
        let subscribers = (0..config.subscribers)
            .map(|_| {
                tokio::spawn(subscriber(
                    store.clone(),
                    targets.clone(),
                    Arc::clone(&progress),
                ))
            })
            .collect();
        let (stop_runner, runner_stopped) = watch::channel(false);
        let runner = tokio::spawn(runner(store.clone(), runner_stopped, Arc::clone(&progress)));
        Self {
            url: url.to_owned(),
            application_name,
            store,
            progress,
            stop_writers,
            stop_runner,
            target,
            writers,
            subscribers,
            runner,
        }
    }

    /// Terminates every backend serving the load (`pg_terminate_backend`); how many.
    /// Nothing if the server cannot be reached.
    pub(crate) async fn kill_backends(&self) -> u64 {
        let Ok(Ok(mut connection)) =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&self.url)).await
        else {
            return 0;
        };
        // The filter in a subquery of its own: in one WHERE clause the planner may call
        // `pg_terminate_backend` before it has checked the name, on this session too.
        let killed: Result<Vec<bool>, _> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM \
             (SELECT pid FROM pg_stat_activity \
              WHERE application_name = $1 AND pid <> pg_backend_pid() OFFSET 0) AS load",
        )
        .bind(&self.application_name)
        .fetch_all(&mut connection)
        .await;
        let _ = connection.close().await;
        killed.map_or(0, |killed| killed.iter().filter(|k| **k).count() as u64)
    }

    /// Commands acknowledged, events delivered and events handled so far.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (
            self.progress.acks.count(),
            self.progress.deliveries.count(),
            self.progress.handled.count(),
        )
    }

    /// Waits (up to [`DEADLINE`]) until writers, subscribers and the runner all made
    /// progress after `back`, the moment the server accepted connections again.
    pub(crate) async fn recovery(&self, back: Instant) -> Recovery {
        let since = |times: &Times| times.first_after(back).map(|t| t - back);
        loop {
            let recovery = Recovery {
                writers: since(&self.progress.acks),
                subscribers: since(&self.progress.deliveries),
                runner: since(&self.progress.handled),
            };
            let all = recovery.writers.is_some()
                && recovery.subscribers.is_some()
                && recovery.runner.is_some();
            if all || back.elapsed() >= DEADLINE {
                return recovery;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the load and checks what it left (see the module docs).
    pub(crate) async fn finish(self) -> Report {
        let mut report = Report::default();
        let violations = &mut report.violations;
        self.stop_writers.send_replace(true);
        let mut acked = Vec::new();
        for (index, writer) in self.writers.into_iter().enumerate() {
            let Some(log) = within(writer).await else {
                violations.push(format!("writer {index} did not stop within {DEADLINE:?}"));
                continue;
            };
            report.commands_unknown += log.unknown.len();
            report.command_errors.merge(log.errors);
            report.recorded_despite_error += log.recorded_despite_error;
            acked.extend(log.acked);
        }
        report.commands_acknowledged = acked.len();

        let mut check = connect(&self.url).await;
        let rows: Vec<(Uuid, String, i64, Option<Uuid>)> = sqlx::query_as(
            "SELECT event_id, stream_id, version, causation_id FROM es.events \
             ORDER BY stream_id, version",
        )
        .fetch_all(&mut check)
        .await
        .expect("read the stored events");
        report.events_stored = rows.len();
        check_streams(&rows, violations);
        check_commands(&rows, &acked, violations);

        // The log as a reader after the fact sees it, once nothing holds its horizon back.
        let reader = PgEventStore::new(pool(&self.url, "es-fault-check", 2));
        let mut log: Vec<Uuid> = Vec::new();
        let until = Instant::now() + DEADLINE;
        while log.len() < rows.len() && Instant::now() < until {
            log = reader
                .read_all::<RawEvent>(Position::START, EventFilter::all())
                .map_ok(|e| e.event_id)
                .try_collect()
                .await
                .expect("read the log");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stored: HashSet<Uuid> = rows.iter().map(|r| r.0).collect();
        if log.len() != rows.len() || log.iter().any(|id| !stored.contains(id)) {
            violations.push(format!(
                "read_all gave {} events, {} are stored",
                log.len(),
                rows.len()
            ));
        }

        self.target.send_replace(Some(log.len()));
        for (index, subscriber) in self.subscribers.into_iter().enumerate() {
            let Some(seen) = within(subscriber).await else {
                violations.push(format!(
                    "subscriber {index} did not receive {} events within {DEADLINE:?}",
                    log.len()
                ));
                continue;
            };
            report.events_delivered += seen.seen.len();
            report.subscriber_errors += seen.errors.len();
            if let Some(first) = seen.errors.first() {
                violations.push(format!(
                    "subscriber {index}: the subscription failed {} times (first: {first})",
                    seen.errors.len()
                ));
            }
            if seen.ended > 0 {
                violations.push(format!("subscriber {index}: the subscription ended"));
            }
            if let Some(at) =
                (0..seen.seen.len().max(log.len())).find(|&i| seen.seen.get(i) != log.get(i))
            {
                violations.push(format!(
                    "subscriber {index} received {} events; they differ from the log's {} \
                     from index {at} on ({:?} instead of {:?})",
                    seen.seen.len(),
                    log.len(),
                    seen.seen.get(at),
                    log.get(at)
                ));
            }
        }

        // The runner: wait for it to get through the log, then stop it.
        let until = Instant::now() + DEADLINE;
        while counted(&mut check).await.len() < rows.len() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop_runner.send_replace(true);
        match within(self.runner).await {
            Some(failures) => report.runner_failures = failures,
            None => violations.push(format!("the runner did not stop within {DEADLINE:?}")),
        }
        let ids = counted(&mut check).await;
        let unique: HashSet<Uuid> = ids.iter().copied().collect();
        if unique.len() != ids.len() {
            violations.push(format!(
                "the runner's projection applied {} events twice",
                ids.len() - unique.len()
            ));
        }
        if unique != stored {
            violations.push(format!(
                "the runner's projection holds {} of the {} stored events ({} not stored)",
                unique.intersection(&stored).count(),
                stored.len(),
                unique.difference(&stored).count()
            ));
        }

        let idle: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
        )
        .bind(&self.application_name)
        .fetch_one(&mut check)
        .await
        .expect("read pg_stat_activity");
        if idle > 0 {
            violations.push(format!(
                "{idle} of the store's sessions are idle in a transaction"
            ));
        }
        self.store.pool().close().await;
        reader.pool().close().await;
        report
    }
}

/// The rows of the runner's projection.
async fn counted(check: &mut PgConnection) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT event_id FROM es.counted")
        .fetch_all(check)
        .await
        .expect("read the projection")
}

/// A task's output, unless it takes longer than [`DEADLINE`] (it is then aborted).
async fn within<T>(task: JoinHandle<T>) -> Option<T> {
    let abort = task.abort_handle();
    match tokio::time::timeout(DEADLINE, task).await {
        Ok(output) => Some(output.expect("load task")),
        Err(_) => {
            abort.abort();
            None
        }
    }
}

/// A connection of its own to `url`, retried while the server comes up.
async fn connect(url: &str) -> PgConnection {
    let until = Instant::now() + DEADLINE;
    loop {
        match PgConnection::connect(url).await {
            Ok(connection) => return connection,
            Err(error) if Instant::now() >= until => panic!("cannot connect to {url}: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
