//! Whatever a caller cancels, an append that returned `Ok` is committed, and no connection
//! goes back to the pool inside a transaction.
//!
//! Any `.await` on the store can be where a caller drops the future (a `JoinHandle::abort`,
//! a `timeout`, a `select!` that took another branch). The dangerous point is a `BEGIN` in
//! flight: sqlx 0.9.0's `Pool::begin()` is not cancel safe (launchbadge/sqlx#4393, #4394),
//! so a task dropped there returns its connection to the pool inside an open transaction.
//! Later autocommit appends on that connection then return `Ok` and are rolled back when it
//! closes, and after its first error every statement on it fails with 25P02. The store
//! reaches `begin()` from transactional projections (a transaction per batch), appends with
//! inline projections, `archive_stream` and `migrate`.
//!
//! So: round after round of concurrent load on a pool of three connections (small, so that
//! a poisoned connection is drawn again soon), cancelled at random moments, checked after
//! every round from a connection of its own: every acknowledged event is stored, no session
//! of the pool is `idle in transaction`, and no store call failed. On the first violation
//! the test also tries the store, closes the pool and counts the acknowledged events that
//! were rolled back with it, then fails with the round number and those figures.
//!
//! Run with `--nocapture` to see the figures of a passing run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use es_core::error::BoxError;
use es_core::{
    EventEnvelope, EventFilter, EventStore as _, ExpectedVersion, NewEvent, ProjectionRunner,
    RawEvent, StreamId, Version,
};
use es_postgres::{PgEventStore, PgInlineProjection, PgProjection, PgTransactionalProjection};
use es_testkit::fixture::AccountEvent;
use futures_util::TryStreamExt as _;
use futures_util::future::BoxFuture;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use uuid::Uuid;

/// At most this many rounds (about 20 s of them on a 2-core machine)...
const ROUNDS: u32 = 400;
/// ...and no more time than this for them, so that the file stays under a minute even
/// when a violation then hangs the rounds that describe it.
const BUDGET: Duration = Duration::from_secs(30);
/// The pool: small, so that a connection left in a transaction is drawn again soon.
const POOL: u32 = 3;
/// Rounds run on after the first violation, to show what it does to later calls.
const AFTERMATH: u32 = 10;
/// No round, and no call of the final check, may take longer: a lock held by a leaked
/// transaction would otherwise hang the test (the store sets no lock or statement timeout).
const DEADLINE: Duration = Duration::from_secs(10);

/// What the load saw: every event id whose append returned `Ok`, and every failure.
#[derive(Default)]
struct Ledger {
    acked: Mutex<Vec<Uuid>>,
    /// Failures by kind (SQLSTATE where there is one), with one message each.
    errors: Mutex<BTreeMap<String, (u64, String)>>,
}

impl Ledger {
    fn ack(&self, ids: impl IntoIterator<Item = Uuid>) {
        self.acked.lock().unwrap().extend(ids);
    }

    fn failed(&self, what: &str, error: &(dyn std::error::Error + 'static)) {
        let kind = format!("{what}: {}", sqlstate(error).unwrap_or_else(|| "-".into()));
        let mut errors = self.errors.lock().unwrap();
        let entry = errors
            .entry(kind)
            .or_insert((0, es_core::error::display_chain(error)));
        entry.0 += 1;
    }
}

/// The SQLSTATE of the first database error in `error`'s source chain.
fn sqlstate(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(sqlx::Error::Database(database)) = error.downcast_ref::<sqlx::Error>() {
            return database.code().map(|code| code.into_owned());
        }
        current = error.source();
    }
    None
}

/// A random moment from nothing to about 3 ms: either some scheduler yields (which lands
/// inside sub-millisecond round trips such as a `BEGIN`) or a timer.
async fn random_moment() {
    if fastrand::bool() {
        for _ in 0..fastrand::u32(0..600) {
            tokio::task::yield_now().await;
        }
    } else {
        tokio::time::sleep(Duration::from_micros(fastrand::u64(0..3_000))).await;
    }
}

/// Runs `call`, or drops it part way: `None` if it was cut short. Half the calls run in
/// full, a quarter under a `timeout` of up to 2 ms, a quarter raced against
/// [`random_moment`] in a `select!`.
async fn maybe_cut<F: Future>(call: F) -> Option<F::Output> {
    match fastrand::u8(0..4) {
        0 => tokio::time::timeout(Duration::from_micros(fastrand::u64(1..2_000)), call)
            .await
            .ok(),
        1 => tokio::select! {
            output = call => Some(output),
            () = random_moment() => None,
        },
        _ => Some(call.await),
    }
}

fn deposit(amount: u64) -> Vec<NewEvent<AccountEvent>> {
    vec![NewEvent::new(AccountEvent::Deposited { amount })]
}

/// Appends `appends` single events to `stream`, some cut short, recording what was
/// acknowledged.
async fn append_many(store: PgEventStore, stream: StreamId, appends: u64, ledger: Arc<Ledger>) {
    for n in 1..=appends {
        let appended = store.append(&stream, ExpectedVersion::Any, deposit(n));
        match maybe_cut(appended).await {
            Some(Ok(committed)) => ledger.ack(committed.events.iter().map(|e| e.event_id)),
            Some(Err(error)) => ledger.failed("append", &error),
            None => {}
        }
    }
}

/// Appends to a throwaway stream and archives it, either cut short.
async fn archive_one(store: PgEventStore, stream: StreamId, ledger: Arc<Ledger>) {
    match maybe_cut(store.append(&stream, ExpectedVersion::Any, deposit(1))).await {
        Some(Ok(committed)) => ledger.ack(committed.events.iter().map(|e| e.event_id)),
        Some(Err(error)) => ledger.failed("append", &error),
        None => {}
    }
    if let Some(Err(error)) = maybe_cut(store.archive_stream(&stream)).await {
        ledger.failed("archive", &error);
    }
}

/// Records the ids it handles in `<schema>.projected`, a batch per transaction.
struct Projected {
    table: String,
}

impl PgProjection for Projected {
    type Event = RawEvent;

    fn name(&self) -> &str {
        "projected"
    }

    async fn handle(
        &mut self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope<RawEvent>,
    ) -> Result<(), BoxError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (event_id) VALUES ($1)",
            self.table
        )))
        .bind(envelope.event_id)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// Records the ids of the `inline` category in `<schema>.inline_seen`, in the append's
/// transaction.
struct InlineSeen {
    table: String,
}

impl PgInlineProjection for InlineSeen {
    fn name(&self) -> &str {
        "inline-seen"
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all().with_categories(["inline"])
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {} (event_id) SELECT * FROM UNNEST($1::uuid[])",
                self.table
            )))
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            Ok(())
        })
    }
}

/// The stores under test: one pool of [`POOL`] connections tagged `application_name`,
/// shared by a plain store and one with an inline projection.
struct Setup {
    base: PgEventStore,
    plain: PgEventStore,
    inline: PgEventStore,
    application_name: String,
}

async fn setup() -> Setup {
    let base = common::fresh_store().await;
    let schema = base.schema().as_str().to_owned();
    for table in ["projected", "inline_seen"] {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE \"{schema}\".{table} (event_id uuid NOT NULL)"
        )))
        .execute(base.pool())
        .await
        .unwrap();
    }
    let application_name = format!(
        "es-test-cancel-{}",
        &Uuid::now_v7().simple().to_string()[..16]
    );
    let pool = common::connect(&application_name, POOL).await;
    let builder = || {
        PgEventStore::builder(pool.clone())
            .schema(&schema)
            .unwrap()
            .poll_interval(Duration::from_millis(20))
    };
    let plain = builder().build();
    let inline = builder()
        .inline_projection(Arc::new(InlineSeen {
            table: format!("\"{schema}\".inline_seen"),
        }))
        .build();
    Setup {
        base,
        plain,
        inline,
        application_name,
    }
}

/// One round of load: writers, inline appends, an archive, a migration and a projection
/// runner, concurrently; about half the tasks are aborted at a random moment. `false` if
/// the round did not end within [`DEADLINE`] (its tasks are then aborted).
async fn round(setup: &Setup, round: u32, ledger: &Arc<Ledger>) -> bool {
    let mut tasks = Vec::new();
    for writer in 0..2 {
        let stream = StreamId::new("plain", &format!("{round}x{writer}")).unwrap();
        tasks.push(tokio::spawn(append_many(
            setup.plain.clone(),
            stream,
            6,
            Arc::clone(ledger),
        )));
    }
    let stream = StreamId::new("inline", &round.to_string()).unwrap();
    tasks.push(tokio::spawn(append_many(
        setup.inline.clone(),
        stream,
        4,
        Arc::clone(ledger),
    )));
    let scrap = StreamId::new("scrap", &round.to_string()).unwrap();
    tasks.push(tokio::spawn(archive_one(
        setup.plain.clone(),
        scrap,
        Arc::clone(ledger),
    )));
    let (store, migrations) = (setup.plain.clone(), Arc::clone(ledger));
    tasks.push(tokio::spawn(async move {
        if let Some(Err(error)) = maybe_cut(store.migrate()).await {
            migrations.failed("migrate", &error);
        }
    }));
    // A fresh runner each round (the last one was aborted): no lease, so that an aborted
    // runner's lease does not stall the next; tiny batches, so that it begins often.
    let (store, runs) = (setup.plain.clone(), Arc::clone(ledger));
    let table = format!("\"{}\".projected", store.schema());
    tasks.push(tokio::spawn(async move {
        let mut runner = ProjectionRunner::new(
            store.clone(),
            PgTransactionalProjection::new(store, Projected { table }),
        )
        .with_lease(None)
        .with_batch_size(3)
        .with_commit_interval(Duration::from_millis(1));
        let stop = tokio::time::sleep(Duration::from_millis(15));
        if let Err(error) = runner.run_until(stop).await {
            runs.failed("runner", &error);
        }
    }));

    for task in &tasks {
        if fastrand::bool() {
            let abort = task.abort_handle();
            tokio::spawn(async move {
                random_moment().await;
                abort.abort();
            });
        }
    }
    let aborts: Vec<_> = tasks.iter().map(|task| task.abort_handle()).collect();
    let all = futures_util::future::join_all(tasks);
    let Ok(ended) = tokio::time::timeout(DEADLINE, all).await else {
        aborts.iter().for_each(tokio::task::AbortHandle::abort);
        return false;
    };
    for outcome in ended {
        if let Err(error) = outcome
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }
    true
}

async fn fresh_connection() -> PgConnection {
    PgConnection::connect(&common::database_url())
        .await
        .unwrap()
}

/// The acknowledged ids a fresh connection cannot see.
async fn missing(setup: &Setup, acked: &[Uuid]) -> Vec<Uuid> {
    let stored: Vec<Uuid> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT event_id FROM \"{}\".events WHERE event_id = ANY($1)",
        setup.base.schema()
    )))
    .bind(acked)
    .fetch_all(&mut fresh_connection().await)
    .await
    .unwrap();
    let stored: HashSet<Uuid> = stored.into_iter().collect();
    acked
        .iter()
        .filter(|id| !stored.contains(id))
        .copied()
        .collect()
}

/// The pool's sessions inside a transaction with nothing running (plain, or aborted).
async fn idle_in_transaction(setup: &Setup) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
    )
    .bind(&setup.application_name)
    .fetch_one(&mut fresh_connection().await)
    .await
    .unwrap()
}

/// Sessions still idle in a transaction after the round's connections had time to go
/// back to the pool (a dropped transaction's `ROLLBACK` goes out on the way back).
async fn settled_idle_in_transaction(setup: &Setup) -> i64 {
    // The wait ends as soon as none is left; the bound is for a loaded machine.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let idle = idle_in_transaction(setup).await;
        if idle == 0 || Instant::now() >= until {
            return idle;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the store still works: appends drawing every connection of the pool, each read
/// back through the store and seen from a fresh connection. The problems found, if any;
/// the ids acknowledged go to `acked`.
async fn store_works(setup: &Setup, acked: &mut Vec<Uuid>) -> Vec<String> {
    let mut problems = Vec::new();
    for attempt in 0..3 {
        // `POOL` at once, so that each draws a different connection.
        let appends = (0..POOL).map(|n| {
            let stream = StreamId::new("after", &format!("{attempt}x{n}")).unwrap();
            let store = setup.plain.clone();
            async move {
                let appended = store.append(&stream, ExpectedVersion::NoStream, deposit(1));
                let appended = tokio::time::timeout(DEADLINE, appended).await;
                (stream, appended)
            }
        });
        for (stream, appended) in futures_util::future::join_all(appends).await {
            match appended {
                Ok(Ok(committed)) => {
                    acked.push(committed.events[0].event_id);
                    let read = setup
                        .plain
                        .read_stream::<AccountEvent>(&stream, Version::INITIAL)
                        .try_collect::<Vec<_>>();
                    match tokio::time::timeout(DEADLINE, read).await {
                        Ok(Ok(events)) if events.len() == 1 => {}
                        Ok(Ok(events)) => problems.push(format!(
                            "{stream}: read back {} events instead of 1",
                            events.len()
                        )),
                        Ok(Err(error)) => {
                            problems.push(format!(
                                "{stream}: read failed: {}",
                                es_core::error::display_chain(&error)
                            ));
                        }
                        Err(_) => problems.push(format!("{stream}: read hung for {DEADLINE:?}")),
                    }
                }
                Ok(Err(error)) => {
                    problems.push(format!(
                        "{stream}: append failed: {}",
                        es_core::error::display_chain(&error)
                    ));
                }
                Err(_) => problems.push(format!("{stream}: append hung for {DEADLINE:?}")),
            }
        }
    }
    let invisible = missing(setup, acked).await;
    if !invisible.is_empty() {
        problems.push(format!(
            "{} of {} acknowledged appends are not visible to a fresh connection",
            invisible.len(),
            acked.len()
        ));
    }
    problems
}

/// Cancelled appends, archives, migrations and projection batches never leave a
/// connection in a transaction, and never lose an acknowledged event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_calls_lose_no_acknowledged_event_and_leak_no_transaction() {
    let setup = setup().await;
    let ledger = Arc::new(Ledger::default());
    let started = Instant::now();
    let mut broken = None;
    let mut rounds = 0;
    while rounds < ROUNDS && started.elapsed() < BUDGET {
        rounds += 1;
        let ended = round(&setup, rounds, &ledger).await;
        let idle = settled_idle_in_transaction(&setup).await;
        let acked = ledger.acked.lock().unwrap().clone();
        let missing = missing(&setup, &acked).await;
        if !ended || idle > 0 || !missing.is_empty() || !ledger.errors.lock().unwrap().is_empty() {
            broken = Some((ended, idle, missing.len(), started.elapsed()));
            break;
        }
    }
    eprintln!(
        "cancellation: {rounds} rounds in {:.1?}, {} appends acknowledged",
        started.elapsed(),
        ledger.acked.lock().unwrap().len()
    );
    let Some((ended, idle, invisible, elapsed)) = broken else {
        let problems = tokio::time::timeout(DEADLINE, store_works(&setup, &mut Vec::new()))
            .await
            .unwrap_or_else(|_| vec![format!("the check of the store hung for {DEADLINE:?}")]);
        assert!(problems.is_empty(), "after the load: {problems:#?}");
        assert_eq!(settled_idle_in_transaction(&setup).await, 0);
        setup.plain.pool().close().await;
        common::drop_schema(setup.base).await;
        return;
    };

    // Describe the damage before failing: a few more rounds on the broken pool, then does
    // the store still work, and what does closing the pool (as a process exit would) do to
    // the acknowledged events nobody can see?
    let mut hung = 0;
    for more in 1..=AFTERMATH {
        if !round(&setup, rounds + more, &ledger).await {
            // One hung round shows the point; more would only stretch the test.
            hung += 1;
            break;
        }
    }
    let mut acked_after = Vec::new();
    let problems = tokio::time::timeout(DEADLINE, store_works(&setup, &mut acked_after))
        .await
        .unwrap_or_else(|_| vec![format!("the check of the store hung for {DEADLINE:?}")]);
    ledger.ack(acked_after);
    let acked = ledger.acked.lock().unwrap().clone();
    let invisible_later = missing(&setup, &acked).await.len();
    setup.plain.pool().close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lost = missing(&setup, &acked).await.len();
    let errors = ledger.errors.lock().unwrap().clone();
    let failed_transactions: u64 = errors
        .iter()
        .filter(|(kind, _)| kind.ends_with("25P02"))
        .map(|(_, (count, _))| count)
        .sum();
    panic!(
        "round {rounds} (of up to {ROUNDS}, after {elapsed:.1?}) broke the store:\n\
         - the round ended within {DEADLINE:?}: {ended}\n\
         - sessions idle in a transaction: {idle}\n\
         - acknowledged events not visible to a fresh connection: {invisible}\n\
         after up to {AFTERMATH} more rounds ({hung} hung) and a check of the store:\n\
         - acknowledged events not visible to a fresh connection: {invisible_later} of {}\n\
         - of those, lost for good once the pool closed: {lost}\n\
         - store calls failing with 25P02 (in failed SQL transaction): {failed_transactions}\n\
         - store call failures by kind (count, first message): {errors:#?}\n\
         - the store afterwards: {problems:#?}",
        acked.len(),
    );
}
