//! Commit-to-subscriber latency in another process, while commands run at a steady rate.
//!
//! The bench re-executes itself as the subscriber (`ES_LATENCY_ROLE=subscriber`): a
//! separate process with a store of its own on the same schema, subscribed to the global
//! log with `EventStore::subscribe`, as an application's projector on another machine
//! would be. For each event it receives it writes `s <event id> <receive time>` on its
//! stdout; the parent matches the lines to the commands it ran, by event id.
//!
//! The parent runs commands through `Repository` (the default one: no state cache), one
//! event each, round-robin over 1,000 aggregates, paced at 1,000 commands/s on a fixed
//! schedule (open loop: a slow command does not delay the next one's start, so a stall
//! shows up as latency instead of vanishing as a lower rate). For each command it keeps
//! the wall-clock time it began and the time its append was acknowledged. Both processes
//! read this machine's realtime clock, so
//!
//! - *ack to receive* = receive time − acknowledgement: what a reader of the log waits for
//!   an event that its writer already knows is committed. It can be negative: the server
//!   tells the subscriber about the commit before the writer has read the reply;
//! - *begin to receive* = receive time − begin, which includes the command itself.
//!
//! The baseline of the same run is the floor of the server and the machine: a bare
//! `INSERT` into a minimal table with a `pg_notify` in the same statement (so delivered at
//! its commit), at the same rate and concurrency, and the same child process receiving the
//! notification on a plain `LISTEN` connection and stamping it the same way.
//!
//! For the commands it also splits ack to receive at each event's *release*, the moment
//! every append with an older transaction id had been acknowledged: a gapless subscriber
//! cannot deliver an event before older transactions that may still write have ended, so
//! the part before the release is the price of never skipping a late commit, and the part
//! after it is the notification and the read. While a part runs, the bench samples what
//! holds the log's horizon back (a transaction of the bench's, or another session's).
//!
//! Every event must be matched: missing ones are reported and the bench exits with an
//! error. Run with `cargo bench -p es-postgres --bench latency` (DATABASE_URL, default
//! `postgres://postgres@127.0.0.1:5432/test`). It makes a database of its own on that
//! server and drops it at the end (other sessions' transactions in the store's database
//! hold its subscribers back, see `parent`); `-- shared-database` runs in a schema of its
//! own in the URL's database instead, and drops the schema. Takes about 50 s. Prints
//! figures; it asserts nothing about time.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary: printing is its output, a failure aborts it"
)]

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use es_core::{Aggregate, DomainEvent, EventFilter, EventStore as _, Position, Repository};
use es_postgres::PgEventStore;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{AssertSqlSafe, PgPool};
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

mod support;
use support::{memo, minimal_table_ddl};

/// Set in the subscriber's environment; the parent sets the rest below.
const ROLE: &str = "ES_LATENCY_ROLE";
const SCHEMA: &str = "ES_LATENCY_SCHEMA";
const CHANNEL: &str = "ES_LATENCY_CHANNEL";
const URL: &str = "DATABASE_URL";
/// The database the parent made for the run, if it made one.
const DATABASE: &str = "ES_LATENCY_DATABASE";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The `application_name` of the bench's connections, so that the horizon's holders can
/// be told apart from other sessions on the server.
const APPLICATION: &str = "es-latency";
const SUBSCRIBER_APPLICATION: &str = "es-latency-subscriber";

/// The command rate and how long each part runs at it.
const RATE: u64 = 1_000;
const WARM_UP: Duration = Duration::from_secs(3);
const BASELINE: Duration = Duration::from_secs(10);
const MEASURED: Duration = Duration::from_secs(25);
const AGGREGATES: u64 = 1_000;
/// Commands in flight at most: more than the rate times a command's usual duration, so the
/// pace holds through a slow moment; fewer than the pool's connections plus a few.
const IN_FLIGHT: usize = 16;
const POOL: u32 = 10;

/// How long the parent waits for the subscriber to be ready, for the last events after a
/// part, and for it to exit.
const READY_DEADLINE: Duration = Duration::from_secs(30);
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
const EXIT_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum MeterEvent {
    Read { memo: String },
}

#[derive(Debug, Clone)]
struct TakeReading(String);

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[derive(Debug, Default, Clone, Serialize, Deserialize, es_core::AggregateType)]
#[aggregate(name = "meter", command = TakeReading, event = MeterEvent, error = Never)]
struct Meter {
    readings: u64,
}

impl Aggregate for Meter {
    async fn handle(&self, command: TakeReading, _: &()) -> Result<Vec<MeterEvent>, Never> {
        Ok(vec![MeterEvent::Read { memo: command.0 }])
    }

    fn apply(&mut self, _: &MeterEvent) {
        self.readings += 1;
    }
}

/// Nanoseconds since 1970 on the realtime clock, which both processes share.
fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn database_url() -> String {
    std::env::var(URL).unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The options to connect to the server of `DATABASE_URL`, to `database` if given, else to
/// the URL's own.
fn connect_options(database: Option<&str>, application: &str) -> PgConnectOptions {
    let options = database_url()
        .parse::<PgConnectOptions>()
        .expect("DATABASE_URL is a PostgreSQL URL")
        .application_name(application);
    match database {
        Some(database) => options.database(database),
        None => options,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if std::env::var(ROLE).is_ok_and(|r| r == "subscriber") {
        runtime.block_on(subscriber());
    } else {
        let ok = runtime.block_on(parent());
        if !ok {
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The subscriber process.

/// Subscribes to the log and listens on the baseline's channel, writing one line per event
/// or notification received, until its stdin closes (the parent is done, or gone).
async fn subscriber() {
    let schema = std::env::var(SCHEMA).expect("the parent names the schema");
    let channel = std::env::var(CHANNEL).expect("the parent names the channel");
    let database = std::env::var(DATABASE).ok();

    // Lines go out through one thread, so that the receiving tasks only stamp and hand over.
    let (lines, outbox) = std::sync::mpsc::channel::<String>();
    let writer = std::thread::spawn(move || {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        while let Ok(line) = outbox.recv() {
            // A closed pipe means the parent is gone: stop.
            if writeln!(out, "{line}").is_err() {
                return;
            }
            while let Ok(line) = outbox.try_recv() {
                if writeln!(out, "{line}").is_err() {
                    return;
                }
            }
            if out.flush().is_err() {
                return;
            }
        }
    });

    // The parent closing stdin (or dying) ends this process.
    let stdin_closed = Arc::new(Notify::new());
    {
        let stdin_closed = Arc::clone(&stdin_closed);
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().lock().read_to_end(&mut sink);
            stdin_closed.notify_one();
        });
    }

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(connect_options(database.as_deref(), SUBSCRIBER_APPLICATION))
        .await
        .expect("the subscriber connects");
    let store = PgEventStore::builder(pool.clone())
        .schema(&schema)
        .expect("valid schema")
        .build();

    let mut listener = PgListener::connect_with(&pool)
        .await
        .expect("the baseline listener connects");
    listener
        .listen(&channel)
        .await
        .expect("LISTEN on the baseline channel");

    let baseline = {
        let lines = lines.clone();
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(notification) => {
                        let at = wall_ns();
                        let line = format!("b {} {at}", notification.payload());
                        if lines.send(line).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = lines.send(format!("error baseline listener: {error}"));
                        return;
                    }
                }
            }
        })
    };

    let subscription = {
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut live =
                std::pin::pin!(store.subscribe::<MeterEvent>(Position::START, EventFilter::all()));
            while let Some(event) = live.next().await {
                let at = wall_ns();
                let line = match event {
                    Ok(event) => format!("s {} {at}", event.event_id),
                    Err(error) => format!("error subscription: {error}"),
                };
                if lines.send(line).is_err() {
                    return;
                }
            }
        })
    };

    lines.send("ready".to_owned()).ok();
    stdin_closed.notified().await;
    subscription.abort();
    baseline.abort();
    drop(lines);
    let _ = subscription.await;
    let _ = baseline.await;
    let _ = writer.join();
}

// ---------------------------------------------------------------------------------------
// The parent process.

/// What the subscriber reported: receive times by event id, for each kind of line.
#[derive(Default)]
struct Received {
    ready: bool,
    store: HashMap<Uuid, i64>,
    baseline: HashMap<Uuid, i64>,
    errors: Vec<String>,
    /// The subscriber's stdout closed: it exited.
    gone: bool,
}

struct Subscriber {
    child: Child,
    stdin: Option<ChildStdin>,
    received: Arc<Mutex<Received>>,
    changed: Arc<Notify>,
}

impl Subscriber {
    fn spawn(database: Option<&str>, schema: &str, channel: &str) -> Self {
        let mut command = Command::new(std::env::current_exe().expect("the bench's own path"));
        if let Some(database) = database {
            command.env(DATABASE, database);
        }
        let mut child = command
            .env(ROLE, "subscriber")
            .env(SCHEMA, schema)
            .env(CHANNEL, channel)
            .env(URL, database_url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the subscriber process");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("the subscriber's stdout");
        let received = Arc::new(Mutex::new(Received::default()));
        let changed = Arc::new(Notify::new());
        {
            let (received, changed) = (Arc::clone(&received), Arc::clone(&changed));
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let mut r = received.lock().unwrap();
                    let mut parts = line.split(' ');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some("ready"), None, None) => r.ready = true,
                        (Some(kind @ ("s" | "b")), Some(id), Some(at)) => {
                            match (id.parse::<Uuid>(), at.parse::<i64>()) {
                                (Ok(id), Ok(at)) => {
                                    let map = if kind == "s" {
                                        &mut r.store
                                    } else {
                                        &mut r.baseline
                                    };
                                    if map.insert(id, at).is_some() {
                                        r.errors.push(format!("{kind}: event {id} received twice"));
                                    }
                                }
                                _ => r.errors.push(format!("unreadable line {line:?}")),
                            }
                        }
                        _ => r.errors.push(line.clone()),
                    }
                    drop(r);
                    changed.notify_waiters();
                }
                received.lock().unwrap().gone = true;
                changed.notify_waiters();
            });
        }
        Self {
            child,
            stdin,
            received,
            changed,
        }
    }

    /// Waits until `done` holds of what was received, the subscriber is gone, or `deadline`
    /// passes; returns whether `done` holds.
    async fn wait_for(&self, deadline: Duration, done: impl Fn(&Received) -> bool) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let changed = self.changed.notified();
            {
                let r = self.received.lock().unwrap();
                if done(&r) {
                    return true;
                }
                if r.gone {
                    return false;
                }
            }
            // Re-checked at least every 100 ms: a notification sent between the check and
            // the wait would otherwise be missed.
            let step = until
                .saturating_duration_since(tokio::time::Instant::now())
                .min(Duration::from_millis(100));
            if step.is_zero() {
                return done(&self.received.lock().unwrap());
            }
            let _ = tokio::time::timeout(step, changed).await;
        }
    }

    /// Closes its stdin, which ends it; kills it if it has not exited by the deadline.
    async fn stop(mut self) {
        drop(self.stdin.take());
        let until = Instant::now() + EXIT_DEADLINE;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("the subscriber did not exit within {EXIT_DEADLINE:?}; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One command or baseline insert: the id of the event it wrote, and when it began and was
/// acknowledged (nanoseconds on the realtime clock); for a command, the id of the
/// transaction that wrote the event (the first part of its log position).
#[derive(Debug, Clone, Copy)]
struct Sample {
    id: Uuid,
    begin: i64,
    ack: i64,
    transaction: Option<u64>,
}

/// What one operation of [`paced`] reports: its event's id, when it was acknowledged, and
/// the writing transaction's id if known.
type Written = (Uuid, i64, Option<u64>);

/// Runs `op(n)` for n = 0, 1, ... at `RATE` per second for `duration`, each started on its
/// schedule (at most `IN_FLIGHT` at once); `op` returns the id of the event it wrote and
/// when its write was acknowledged. Returns the samples, the achieved rate (operations
/// acknowledged per second, from the first start to the last acknowledgement) and the
/// number of operations that failed.
async fn paced<F, Fut>(duration: Duration, first: u64, op: F) -> (Vec<Sample>, f64, u64)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Written, String>> + Send,
{
    let op = Arc::new(op);
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let interval = Duration::from_nanos(1_000_000_000 / RATE);
    let count = duration.as_nanos() / interval.as_nanos();
    let start = tokio::time::Instant::now();
    let wall_start = wall_ns();
    let mut tasks = Vec::new();
    for i in 0..u64::try_from(count).unwrap() {
        let due = start + interval * u32::try_from(i).unwrap();
        tokio::time::sleep_until(due).await;
        let permit = Arc::clone(&gate).acquire_owned().await.unwrap();
        let op = Arc::clone(&op);
        tasks.push(tokio::spawn(async move {
            let begin = wall_ns();
            let written = op(first + i).await;
            drop(permit);
            written.map(|(id, ack, transaction)| Sample {
                id,
                begin,
                ack,
                transaction,
            })
        }));
    }
    let mut samples = Vec::with_capacity(tasks.len());
    let mut failures = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(sample) => samples.push(sample),
            Err(error) => {
                failures += 1;
                if failures <= 3 {
                    eprintln!("an operation failed: {error}");
                }
            }
        }
    }
    let last = samples.iter().map(|s| s.ack).max().unwrap_or(wall_start);
    let elapsed = Duration::from_nanos(u64::try_from(last - wall_start).unwrap_or(1).max(1));
    let rate = samples.len() as f64 / elapsed.as_secs_f64();
    (samples, rate, failures)
}

/// What held the log's horizon back, sampled every `HORIZON_SAMPLE` during a part.
#[derive(Default)]
struct HorizonSamples {
    samples: u64,
    /// Samples in which the horizon was a transaction of this bench's own sessions.
    ours: u64,
    /// Samples in which it was a transaction of another session in this database, by its
    /// `application_name`, with the longest it had been open.
    foreign: HashMap<String, (u64, f64)>,
}

const HORIZON_SAMPLE: Duration = Duration::from_millis(10);

/// Samples the holder of the horizon (`es_horizon()`, the oldest transaction that may
/// still write to this database) until `stop` is notified. Subscribers deliver nothing
/// written after that transaction began until it ends, so a long one in a session of
/// someone else's shows up here and in the latency.
async fn sample_horizon(pool: PgPool, schema: String, stop: Arc<Notify>) -> HorizonSamples {
    let sql = format!(
        "SELECT a.application_name::text, \
                (extract(epoch FROM clock_timestamp() - a.xact_start) * 1000)::float8 \
         FROM pg_stat_activity a WHERE a.backend_xid = (\"{schema}\".es_horizon())::xid"
    );
    let mut found = HorizonSamples::default();
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return found,
            () = tokio::time::sleep(HORIZON_SAMPLE) => {}
        }
        let holder: Result<Option<(String, f64)>, _> = sqlx::query_as(AssertSqlSafe(sql.clone()))
            .fetch_optional(&pool)
            .await;
        let Ok(holder) = holder else { continue };
        found.samples += 1;
        match holder {
            Some((application, _)) if application.starts_with(APPLICATION) => found.ours += 1,
            Some((application, open_ms)) => {
                let entry = found.foreign.entry(application).or_default();
                entry.0 += 1;
                entry.1 = entry.1.max(open_ms);
            }
            None => {}
        }
    }
}

fn print_horizon(label: &str, found: &HorizonSamples) {
    let foreign: u64 = found.foreign.values().map(|f| f.0).sum();
    println!(
        "{label}: the horizon was held by a transaction of this bench in {} and of another session of this database in {foreign} of {} samples ({HORIZON_SAMPLE:?} apart)",
        found.ours, found.samples
    );
    let mut holders: Vec<_> = found.foreign.iter().collect();
    holders.sort_by_key(|h| std::cmp::Reverse(h.1.0));
    for (application, (count, open_ms)) in holders.iter().take(5) {
        println!("    `{application}`: {count} samples, open up to {open_ms:.0} ms");
    }
}

/// The nearest-rank percentile `q` of sorted `values`, in milliseconds.
fn percentile(sorted: &[i64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1e6
}

fn print_header() {
    println!(
        "{:<50} {:>7} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "latency (ms)", "events", "< 0", "p50", "p90", "p99", "p99.9", "max"
    );
}

fn print_row(what: &str, mut values: Vec<i64>) {
    if values.is_empty() {
        println!("{what:<50} {:>7}", 0);
        return;
    }
    values.sort_unstable();
    let negative = values.iter().filter(|v| **v < 0).count();
    println!(
        "{what:<50} {:>7} {negative:>6} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
        values.len(),
        percentile(&values, 0.5),
        percentile(&values, 0.9),
        percentile(&values, 0.99),
        percentile(&values, 0.999),
        values[values.len() - 1] as f64 / 1e6,
    );
}

/// Prints a part's figures; returns how many of its events the subscriber never reported.
fn report(label: &str, samples: &[Sample], received: &HashMap<Uuid, i64>) -> usize {
    let (mut ack, mut begin, mut commit) = (Vec::new(), Vec::new(), Vec::new());
    let mut missing = 0;
    for sample in samples {
        commit.push(sample.ack - sample.begin);
        match received.get(&sample.id) {
            Some(at) => {
                ack.push(at - sample.ack);
                begin.push(at - sample.begin);
            }
            None => missing += 1,
        }
    }
    print_row(&format!("{label}: ack to receive"), ack);
    print_row(&format!("{label}: begin to receive"), begin);
    print_row(&format!("{label}: begin to ack (the write)"), commit);
    if samples.iter().all(|s| s.transaction.is_some()) {
        let (waits, rest) = release_split(samples, received);
        print_row(&format!("{label}: ack to release (older writes)"), waits);
        print_row(&format!("{label}: release to receive"), rest);
    }
    missing
}

/// Splits each event's ack to receive in two at its *release*: the moment every append of
/// this part with an older transaction id had been acknowledged too. A gapless subscriber
/// delivers nothing of a transaction before every older one that may still write has
/// ended, so until then the event waits for others' writes (the price of never skipping a
/// late commit); after it, for the notification and the read. The release is a lower
/// bound: transactions of other sessions are not in it, and an append is acknowledged a
/// little after it commits.
fn release_split(samples: &[Sample], received: &HashMap<Uuid, i64>) -> (Vec<i64>, Vec<i64>) {
    let mut by_transaction: Vec<&Sample> = samples.iter().collect();
    by_transaction.sort_by_key(|s| s.transaction);
    let (mut waits, mut rest) = (Vec::new(), Vec::new());
    let mut released = i64::MIN;
    for sample in by_transaction {
        released = released.max(sample.ack);
        if let Some(at) = received.get(&sample.id) {
            waits.push(released - sample.ack);
            rest.push(at - released);
        }
    }
    (waits, rest)
}

/// A migrated store in a schema of its own (named as the tests' are, so that a run that
/// dies in the shared database leaves a schema the tests' clean-up drops after a day), on
/// `POOL` connections to `database` (or the URL's).
async fn fresh_store(database: Option<&str>) -> PgEventStore {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let schema = format!("es_test_{now}_{}", Uuid::now_v7().simple());
    let schema = &schema[..schema.len().min(63)];
    let pool =
        es_testkit::postgres::connect_with(connect_options(database, APPLICATION), POOL).await;
    let store = PgEventStore::builder(pool).schema(schema).unwrap().build();
    store.migrate().await.unwrap();
    store
}

async fn parent() -> bool {
    // The horizon is the oldest transaction that may write to the store's database: other
    // sessions' transactions in it hold every subscriber back (other test runs share the
    // database here; under load they held it in a third of the samples). By default the
    // run gets a database of its own, so that it measures the store, not its neighbours;
    // `-- shared-database` runs in the URL's database, neighbours and all.
    let shared = std::env::args().skip(1).any(|a| a == "shared-database");
    let admin = es_testkit::postgres::connect_with(connect_options(None, APPLICATION), 1).await;
    let database = (!shared).then(|| format!("es_latency_{}", Uuid::now_v7().simple()));
    if let Some(database) = &database {
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{database}\"")))
            .execute(&admin)
            .await
            .unwrap();
    }
    let ok = in_database(database.as_deref()).await;
    if let Some(database) = &database {
        // A run that died leaves its database behind, named `es_latency_*`.
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .unwrap();
    }
    ok
}

async fn in_database(database: Option<&str>) -> bool {
    let store = fresh_store(database).await;
    let pool: PgPool = store.pool().clone();
    let schema = store.schema().as_str().to_owned();
    sqlx::raw_sql(AssertSqlSafe(minimal_table_ddl(&format!(
        "\"{schema}\".minimal"
    ))))
    .execute(&pool)
    .await
    .unwrap();
    let server: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!(
        "commit-to-subscriber latency, subscriber in another process, against PostgreSQL {server}\n\
         {RATE} commands/s through Repository (no cache) over {AGGREGATES} aggregates, \
         {IN_FLIGHT} at most in flight, {POOL} connections, in {}\n",
        database.map_or_else(
            || "the URL's database, shared with other sessions".to_owned(),
            |d| format!("a database of its own ({d})")
        )
    );

    let channel = format!("{schema}_baseline");
    let subscriber = Subscriber::spawn(database, &schema, &channel);
    let ok = run(&store, &pool, &schema, &channel, &subscriber).await;
    subscriber.stop().await;
    es_testkit::postgres::drop_schema(store).await;
    pool.close().await;
    ok
}

async fn run(
    store: &PgEventStore,
    pool: &PgPool,
    schema: &str,
    channel: &str,
    subscriber: &Subscriber,
) -> bool {
    if !subscriber.wait_for(READY_DEADLINE, |r| r.ready).await {
        eprintln!("error: the subscriber did not get ready within {READY_DEADLINE:?}");
        return false;
    }

    let repository = Repository::<Meter, _>::new(store.clone());
    let command = move |n: u64| {
        let repository = repository.clone();
        async move {
            let id = format!("m{}", n % AGGREGATES);
            let outcome = repository
                .execute(&id, TakeReading(memo(n)))
                .await
                .map_err(|e| e.to_string())?;
            let ack = wall_ns();
            outcome
                .events
                .first()
                .map(|e| (e.event_id, ack, Some(e.position.parts().0)))
                .ok_or_else(|| "the command recorded no event".to_owned())
        }
    };
    // The floor: a commit, then a notification of it, as soon as the commit is acknowledged.
    // Not a `pg_notify` inside the INSERT's transaction: that takes the server's
    // notification lock at commit and serialises all the writes (in a first version of this
    // bench the writes then took 16 ms at the median and fell behind the pace).
    let insert_sql: Arc<str> = Arc::from(format!(
        "INSERT INTO \"{schema}\".minimal (stream_id, version, payload) VALUES ($1, $2, $3)"
    ));
    let baseline = {
        let (pool, channel) = (pool.clone(), channel.to_owned());
        move |n: u64| {
            let (pool, sql, channel) = (pool.clone(), Arc::clone(&insert_sql), channel.clone());
            async move {
                let id = Uuid::now_v7();
                let mut connection = pool.acquire().await.map_err(|e| e.to_string())?;
                sqlx::query(AssertSqlSafe(sql))
                    .bind(format!("m{}", n % AGGREGATES))
                    .bind(i64::try_from(n / AGGREGATES + 1).unwrap())
                    .bind(serde_json::json!({ "memo": memo(n) }))
                    .execute(&mut *connection)
                    .await
                    .map_err(|e| e.to_string())?;
                let ack = wall_ns();
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(channel)
                    .bind(id.to_string())
                    .execute(&mut *connection)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((id, ack, None))
            }
        }
    };
    let baseline = Arc::new(baseline);
    let command = Arc::new(command);

    // Warm-up: connections opened, statements prepared, the subscriber's listener on, at the
    // pace of the run. Its events are matched too, but not counted.
    let b = Arc::clone(&baseline);
    let (warm_base, _, _) = paced(WARM_UP / 3, 0, move |n| b(n)).await;
    let c = Arc::clone(&command);
    let (warm_store, _, _) = paced(WARM_UP, 0, move |n| c(n)).await;
    let offset = 10 * RATE * WARM_UP.as_secs().max(1);

    let sampled = |stop: &Arc<Notify>| {
        tokio::spawn(sample_horizon(
            pool.clone(),
            schema.to_owned(),
            Arc::clone(stop),
        ))
    };
    let stop = Arc::new(Notify::new());
    let sampler = sampled(&stop);
    let b = Arc::clone(&baseline);
    let (base, base_rate, base_failed) = paced(BASELINE, offset, move |n| b(n)).await;
    stop.notify_one();
    let base_horizon = sampler.await.unwrap();
    let sampler = sampled(&stop);
    let c = Arc::clone(&command);
    let (ours, our_rate, our_failed) = paced(MEASURED, offset, move |n| c(n)).await;
    stop.notify_one();
    let our_horizon = sampler.await.unwrap();

    let expected: Vec<Uuid> = warm_store.iter().chain(&ours).map(|s| s.id).collect();
    let expected_base: Vec<Uuid> = warm_base.iter().chain(&base).map(|s| s.id).collect();
    let all_in = subscriber
        .wait_for(DRAIN_DEADLINE, |r| {
            expected.iter().all(|id| r.store.contains_key(id))
                && expected_base.iter().all(|id| r.baseline.contains_key(id))
        })
        .await;

    let received = subscriber.received.lock().unwrap();
    println!(
        "baseline: bare INSERT, then pg_notify, {} in {BASELINE:?}: {base_rate:.0}/s achieved, {base_failed} failed",
        base.len()
    );
    println!(
        "es-rs: Repository commands, {} in {MEASURED:?}: {our_rate:.0}/s achieved, {our_failed} failed\n",
        ours.len()
    );
    print_header();
    let base_missing = report("baseline (LISTEN)", &base, &received.baseline);
    let our_missing = report("es-rs (subscribe)", &ours, &received.store);
    let extra = received.store.len().saturating_sub(expected.len());
    println!(
        "\nmatched: baseline {} of {}, es-rs {} of {} (warm-up excluded); {extra} events received that were not written by this run",
        base.len() - base_missing,
        base.len(),
        ours.len() - our_missing,
        ours.len(),
    );
    println!();
    print_horizon("baseline", &base_horizon);
    print_horizon("es-rs", &our_horizon);
    let mut ok = all_in && base_failed == 0 && our_failed == 0;
    if !all_in {
        eprintln!(
            "error: {our_missing} events and {base_missing} notifications never reached the subscriber{}",
            if received.gone {
                " (it exited)"
            } else {
                " within the deadline"
            }
        );
    }
    for error in &received.errors {
        eprintln!("error from the subscriber: {error}");
        ok = false;
    }
    ok
}
