//! Coalesced commits (`coalesce_commits`) on the real server: appends that share a
//! transaction keep their own outcomes, one refused append never fails another, an append
//! refused in part rolls its batch back without losing the others, the log stays complete
//! and gapless under many mixed writers, and callers that go away mid-flight never leave
//! an acknowledged append uncommitted.
//!
//! The first two tests make the batch deterministic: the committer (one transaction at a
//! time) is held inside a lone append that waits for a stream lock the test holds, every
//! other append is queued by polling its future once, and the lock is then released, so
//! the queued appends are one batch.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the test holds a transaction open on purpose, and never cancels it"
)]
#![allow(
    clippy::print_stdout,
    reason = "the figures of a run, for whoever reads it"
)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use es_core::{
    AppendError, Committed, DomainEvent, EventFilter, EventStore as _, ExpectedVersion, NewEvent,
    Position, StreamId, Version,
};
use es_postgres::PgEventStore;
use futures_util::{FutureExt as _, StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum Note {
    Written {
        writer: u64,
        n: u64,
    },
    /// An event of about `padding.len()` bytes.
    Padded {
        writer: u64,
        padding: String,
    },
}

/// One test of this file at a time: a test holds a transaction open (the committer's
/// blocker), and readers of the log stop below the oldest transaction still running on
/// the server, so another test's log would come up short meanwhile.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Appending<'a> =
    Pin<Box<dyn Future<Output = Result<Committed<Note>, AppendError>> + Send + 'a>>;

/// `Exact(version)`, or `NoStream` for 0.
fn exact_or_none(version: u64) -> ExpectedVersion {
    match version {
        0 => ExpectedVersion::NoStream,
        v => ExpectedVersion::Exact(Version::new(v)),
    }
}

fn stream(name: &str) -> StreamId {
    StreamId::parse(name).unwrap()
}

fn note(writer: u64, n: u64) -> NewEvent<Note> {
    NewEvent::new(Note::Written { writer, n })
}

fn appending<'a>(
    store: &'a PgEventStore,
    name: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent<Note>>,
) -> Appending<'a> {
    let stream = stream(name);
    Box::pin(async move { store.append(&stream, expected, events).await })
}

/// A store whose committer runs one transaction at a time.
async fn one_transaction_at_a_time() -> PgEventStore {
    common::fresh_store_with(|builder| builder.coalesce_limits(64, 1)).await
}

/// Holds the committer busy: takes stream `blocker`'s lock (as an archive does), starts a
/// lone append to it and waits until that append waits for the lock. Release it by
/// ending the returned transaction; the append then completes.
async fn hold_committer(
    store: &PgEventStore,
) -> (
    sqlx::Transaction<'static, sqlx::Postgres>,
    tokio::task::JoinHandle<Result<Committed<Note>, AppendError>>,
) {
    let key = format!("\"{}\".blocker-1", store.schema());
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&key)
        .execute(&mut *holder)
        .await
        .unwrap();
    let blocked = store.clone();
    let blocker = tokio::spawn(async move {
        blocked
            .append(
                &stream("blocker-1"),
                // Any: a test may hold the committer more than once.
                ExpectedVersion::Any,
                vec![note(0, 0)],
            )
            .await
    });
    // Until the append waits for the lock; a condition, with a bound, not a timing.
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND ((classid::int8 << 32) | objid::int8) = hashtextextended($1, 0)",
        )
        .bind(&key)
        .fetch_one(store.pool())
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        if blocker.is_finished() {
            panic!("the blocking append did not wait: {:?}", blocker.await);
        }
        assert!(Instant::now() < give_up, "the blocking append never waited");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (holder, blocker)
}

/// Polls each append once: it is encoded and queued to the committer, which is busy, so
/// each one waits for its reply.
fn queue_all(appends: &mut [Appending<'_>]) {
    for append in appends {
        assert!(append.as_mut().now_or_never().is_none(), "queued, not done");
    }
}

fn transaction_of(committed: &Committed<Note>) -> u64 {
    committed.events[0].position.parts().0
}

/// The whole log as readers see it, once they see every committed row: readers stop
/// below the oldest transaction still running in the database, which another test run on
/// the same server may hold open for a moment.
async fn log(store: &PgEventStore) -> Vec<es_core::EventEnvelope<Note>> {
    let committed: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".events",
        store.schema()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let log: Vec<_> = store
            .read_all::<Note>(Position::START, EventFilter::all())
            .try_collect()
            .await
            .unwrap();
        if log.len() as i64 >= committed || Instant::now() > give_up {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With batches of three among the fresh appends, the batch is a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_append_never_fails_the_others_of_its_transaction() {
    let _serial = SERIAL.lock().await;
    one_refused_append_never_fails_the_others(3).await;
}

/// All single events, the batch commits with its statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_append_never_fails_the_others_of_its_statement() {
    let _serial = SERIAL.lock().await;
    one_refused_append_never_fails_the_others(1).await;
}

/// The fresh appends alternate between one event and `larger`.
async fn one_refused_append_never_fails_the_others(larger: u64) {
    let size = |i: u64| if i % 2 == 1 { larger } else { 1 };
    let store = one_transaction_at_a_time().await;
    let (stored_a, stored_b) = (note(1, 1), note(2, 1));
    for (name, event) in [("stored-a", &stored_a), ("stored-b", &stored_b)] {
        store
            .append(
                &stream(name),
                ExpectedVersion::NoStream,
                vec![event.clone()],
            )
            .await
            .unwrap();
    }
    store
        .append(
            &stream("stored-c"),
            ExpectedVersion::NoStream,
            vec![note(3, 1)],
        )
        .await
        .unwrap();

    let (holder, blocker) = hold_committer(&store).await;
    let fresh = 12_u64;
    let mut appends: Vec<Appending<'_>> = (0..fresh)
        .map(|i| {
            // Single events, and every other append `larger`.
            let events = (0..size(i)).map(|n| note(100 + i, n)).collect();
            appending(
                &store,
                &format!("fresh-{i}"),
                ExpectedVersion::NoStream,
                events,
            )
        })
        .collect();
    // An idempotent repeat, an id stored elsewhere, a stale expected version, one ahead.
    appends.push(appending(
        &store,
        "stored-a",
        ExpectedVersion::NoStream,
        vec![stored_a.clone()],
    ));
    appends.push(appending(
        &store,
        "clash-1",
        ExpectedVersion::NoStream,
        vec![stored_b.clone()],
    ));
    appends.push(appending(
        &store,
        "stored-c",
        ExpectedVersion::Exact(Version::new(5)),
        vec![note(3, 2)],
    ));
    appends.push(appending(
        &store,
        "ahead-1",
        ExpectedVersion::Exact(Version::new(2)),
        vec![note(4, 1)],
    ));
    queue_all(&mut appends);
    holder.rollback().await.unwrap();
    blocker.await.unwrap().unwrap();
    let mut outcomes = futures_util::future::join_all(appends).await;

    let ahead = outcomes.pop().unwrap();
    assert!(
        matches!(ahead, Err(AppendError::Conflict { actual, .. }) if actual == Version::INITIAL),
        "{ahead:?}"
    );
    let stale = outcomes.pop().unwrap();
    assert!(
        matches!(stale, Err(AppendError::Conflict { actual, .. }) if actual == Version::new(1)),
        "{stale:?}"
    );
    let clash = outcomes.pop().unwrap();
    assert!(
        matches!(&clash, Err(AppendError::DuplicateEventId { event_id, .. }) if *event_id == stored_b.event_id),
        "{clash:?}"
    );
    let repeat = outcomes.pop().unwrap().unwrap();
    assert!(repeat.duplicate);
    assert_eq!(repeat.events[0].event_id, stored_a.event_id);

    // Every fresh append is stored, whole, in one shared transaction.
    let stored: Vec<Committed<Note>> = outcomes.into_iter().map(Result::unwrap).collect();
    let transactions: HashSet<u64> = stored.iter().map(transaction_of).collect();
    assert_eq!(transactions.len(), 1, "the fresh appends shared one commit");
    for (i, committed) in stored.iter().enumerate() {
        assert!(!committed.duplicate);
        assert_eq!(committed.events.len() as u64, size(i as u64));
        for (n, event) in committed.events.iter().enumerate() {
            assert_eq!(event.version, Version::new(n as u64 + 1));
        }
    }
    let log = log(&store).await;
    // Three set-up events, the blocker's, and the fresh appends'.
    let fresh_events: usize = stored.iter().map(|c| c.events.len()).sum();
    assert_eq!(log.len(), 4 + fresh_events);
    assert!(!log.iter().any(|e| e.stream_id.as_str() == "clash-1"));
    assert!(!log.iter().any(|e| e.stream_id.as_str() == "ahead-1"));
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_refused_in_part_rolls_its_batch_back_and_loses_no_other() {
    let _serial = SERIAL.lock().await;
    let store = one_transaction_at_a_time().await;
    let taken = note(1, 1);
    store
        .append(
            &stream("taken-1"),
            ExpectedVersion::NoStream,
            vec![taken.clone()],
        )
        .await
        .unwrap();

    let (holder, blocker) = hold_committer(&store).await;
    let mut appends: Vec<Appending<'_>> = (0..8)
        .map(|i| {
            appending(
                &store,
                &format!("fresh-{i}"),
                ExpectedVersion::NoStream,
                vec![note(100 + i, 0), note(100 + i, 1)],
            )
        })
        .collect();
    // Its first event would go in, its second's id is taken: the batch cannot keep it.
    let new = note(2, 1);
    appends.push(appending(
        &store,
        "partial-1",
        ExpectedVersion::NoStream,
        vec![new.clone(), taken.clone()],
    ));
    queue_all(&mut appends);
    holder.rollback().await.unwrap();
    blocker.await.unwrap().unwrap();
    let mut outcomes = futures_util::future::join_all(appends).await;

    let partial = outcomes.pop().unwrap();
    assert!(
        matches!(&partial, Err(AppendError::DuplicateEventId { event_id, .. }) if *event_id == taken.event_id),
        "{partial:?}"
    );
    let stored: Vec<Committed<Note>> = outcomes.into_iter().map(Result::unwrap).collect();
    // Rolled back and run again, each alone.
    let transactions: HashSet<u64> = stored.iter().map(transaction_of).collect();
    assert_eq!(transactions.len(), stored.len());
    let log = log(&store).await;
    assert_eq!(log.len(), 2 + 2 * stored.len());
    assert!(!log.iter().any(|e| e.event_id == new.event_id));
    assert!(!log.iter().any(|e| e.stream_id.as_str() == "partial-1"));
    common::drop_schema(store).await;
}

/// What one writer of the mixed test did.
#[derive(Debug, Default)]
struct Acknowledged {
    /// Event ids stored by an append that reported success (not a repeat).
    events: Vec<(String, Uuid)>,
    conflicts: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_mixed_writers_get_their_own_outcomes_and_a_complete_log() {
    let _serial = SERIAL.lock().await;
    const WRITERS: u64 = 48;
    const ROUNDS: u64 = 12;
    let store = common::fresh_store_with(|builder| builder.coalesce_commits(true)).await;
    // Each writer's first event, which a later writer's append clashes with.
    let firsts: Vec<NewEvent<Note>> = (0..WRITERS).map(|w| note(w, 0)).collect();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let firsts = firsts.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Acknowledged::default();
            let own = stream(&format!("own-{writer}"));
            let hot = stream(&format!("hot-{}", writer % 4));
            let mut version = 0_u64;
            let mut last: Option<Vec<NewEvent<Note>>> = None;
            for round in 0..ROUNDS {
                // Its own stream, exact: never a conflict, one to three events.
                let events: Vec<NewEvent<Note>> = if round == 0 {
                    vec![firsts[writer as usize].clone()]
                } else {
                    (0..1 + round % 3).map(|n| note(writer, round * 10 + n)).collect()
                };
                let expected = exact_or_none(version);
                let committed = store
                    .append(&own, expected, events.clone())
                    .await
                    .unwrap_or_else(|e| panic!("writer {writer} round {round}: {e}"));
                assert!(!committed.duplicate);
                version += events.len() as u64;
                assert_eq!(committed.version, Version::new(version));
                acknowledged
                    .events
                    .extend(events.iter().map(|e| (own.to_string(), e.event_id)));
                // The same append again: an idempotent repeat.
                if round % 4 == 1 {
                    let repeat = store.append(&own, expected, events.clone()).await.unwrap();
                    assert!(repeat.duplicate);
                    assert_eq!(repeat.version, Version::new(version));
                }
                last = Some(events);
                // A shared stream, at the version it last read: stored or a conflict.
                let seen = store.stream_version(&hot).await.unwrap();
                let event = note(writer, 1_000 + round);
                let expected = exact_or_none(seen.get());
                match store.append(&hot, expected, vec![event.clone()]).await {
                    Ok(committed) => {
                        assert_eq!(committed.version, Version::new(seen.get() + 1));
                        acknowledged.events.push((hot.to_string(), event.event_id));
                    }
                    Err(AppendError::Conflict { actual, .. }) => {
                        assert!(actual > seen, "a conflict means someone got there");
                        acknowledged.conflicts += 1;
                    }
                    Err(other) => panic!("writer {writer}: {other}"),
                }
                // The same shared stream, any version: always stored.
                let event = note(writer, 2_000 + round);
                store
                    .append(&hot, ExpectedVersion::Any, vec![event.clone()])
                    .await
                    .unwrap();
                acknowledged.events.push((hot.to_string(), event.event_id));
                // Another writer's first id, in a stream of this writer's: refused.
                let other = &firsts[((writer + 1) % WRITERS) as usize];
                if round >= 1 {
                    let clash = store
                        .append(
                            &stream(&format!("clash-{writer}-{round}")),
                            ExpectedVersion::NoStream,
                            vec![other.clone()],
                        )
                        .await;
                    assert!(
                        matches!(&clash, Err(AppendError::DuplicateEventId { event_id, .. }) if *event_id == other.event_id),
                        "{clash:?}"
                    );
                }
            }
            drop(last);
            acknowledged
        }));
    }
    let mut expected: HashMap<Uuid, String> = HashMap::new();
    let mut conflicts = 0;
    for task in tasks {
        let acknowledged = task.await.unwrap();
        conflicts += acknowledged.conflicts;
        for (stream, id) in acknowledged.events {
            assert!(expected.insert(id, stream).is_none(), "one id, one append");
        }
    }
    let log = log(&store).await;
    // Exactly the acknowledged events, each once, in the stream they were appended to.
    assert_eq!(log.len(), expected.len());
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in &log {
        assert_eq!(
            expected.get(&event.event_id).map(String::as_str),
            Some(event.stream_id.as_str())
        );
        versions
            .entry(event.stream_id.to_string())
            .or_default()
            .push(event.version.get());
    }
    // Each stream's versions, in log order, are 1, 2, 3 ... without a gap.
    for (stream, versions) in versions {
        let gapless: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(versions, gapless, "stream {stream}");
    }
    // Writers on distinct streams shared transactions: some commit holds several streams.
    let shared: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM (SELECT transaction_id FROM \"{}\".events \
         GROUP BY transaction_id HAVING count(DISTINCT stream_id) > 1) t",
        store.schema()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(shared > 0, "no append was coalesced");
    println!("{conflicts} conflicts on the shared streams, {shared} shared commits");
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_go_away_never_leave_an_acknowledged_append_uncommitted() {
    let _serial = SERIAL.lock().await;
    const WRITERS: u64 = 32;
    const APPENDS: u64 = 25;
    let store = common::fresh_store_with(|builder| builder.coalesce_commits(true)).await;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let own = stream(&format!("own-{writer}"));
            let mut attempted = Vec::new();
            let mut acknowledged = Vec::new();
            for n in 0..APPENDS {
                let events = vec![note(writer, 2 * n), note(writer, 2 * n + 1)];
                let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                // Cut off anywhere: before queueing, while queued, in the transaction.
                let patience = Duration::from_micros(fastrand::u64(0..4_000));
                let appended = tokio::time::timeout(
                    patience,
                    store.append(&own, ExpectedVersion::Any, events),
                )
                .await;
                match appended {
                    Ok(Ok(committed)) => {
                        assert_eq!(committed.events.len(), 2);
                        acknowledged.extend(ids.iter().copied());
                    }
                    Ok(Err(error)) => panic!("writer {writer}: {error}"),
                    Err(_elapsed) => {}
                }
                attempted.push(ids);
            }
            (attempted, acknowledged)
        }));
    }
    let mut attempted = Vec::new();
    let mut acknowledged = Vec::new();
    for task in tasks {
        let (a, b) = task.await.unwrap();
        attempted.extend(a);
        acknowledged.extend(b);
    }
    // The store still serves every writer after all that.
    for writer in 0..WRITERS {
        store
            .append(
                &stream(&format!("own-{writer}")),
                ExpectedVersion::Any,
                vec![note(writer, 9_999)],
            )
            .await
            .unwrap();
    }
    // Read from another pool: what is committed, for anyone.
    let reader = common::second_store(&store, "coalesce-reader", |b| b).await;
    let stored: HashSet<Uuid> = log(&reader).await.iter().map(|e| e.event_id).collect();
    for id in &acknowledged {
        assert!(
            stored.contains(id),
            "acknowledged event {id} is not committed"
        );
    }
    // Every append is whole or absent, acknowledged or not.
    for ids in &attempted {
        let present = ids.iter().filter(|id| stored.contains(id)).count();
        assert!(
            present == 0 || present == ids.len(),
            "an append stored in part"
        );
    }
    // No session of the store's was left inside a transaction.
    let stuck: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
         AND state LIKE 'idle in transaction%'",
    )
    .bind(store.schema().as_str())
    .fetch_one(reader.pool())
    .await
    .unwrap();
    assert_eq!(stuck, 0);
    println!(
        "{} of {} appends acknowledged",
        acknowledged.len() / 2,
        attempted.len()
    );
    drop(reader);
    common::drop_schema(store).await;
}

/// Holds the committer, queues `count` fresh single-event appends to streams
/// `{prefix}-{i}`, releases it, and checks that every one is stored and that they shared
/// one transaction.
async fn appends_share_one_transaction(store: &PgEventStore, prefix: &str, count: u64) {
    let (holder, blocker) = hold_committer(store).await;
    let mut appends: Vec<Appending<'_>> = (0..count)
        .map(|i| {
            appending(
                store,
                &format!("{prefix}-{i}"),
                ExpectedVersion::NoStream,
                vec![note(i, 0)],
            )
        })
        .collect();
    queue_all(&mut appends);
    holder.rollback().await.unwrap();
    blocker.await.unwrap().unwrap();
    let stored: Vec<Committed<Note>> = futures_util::future::join_all(appends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let transactions: HashSet<u64> = stored.iter().map(transaction_of).collect();
    assert_eq!(
        transactions.len(),
        1,
        "the appends of `{prefix}` shared one commit"
    );
}

/// A runtime per test or per request: the committer ends with the runtime it ran on, and
/// the next append starts another on its own runtime, so appends there still coalesce.
#[test]
fn appends_coalesce_on_a_runtime_started_after_the_first_shut_down() {
    let _serial = SERIAL.blocking_lock();
    // The pool's connections are opened on a runtime that lives throughout: a connection
    // belongs to the runtime that opened it and fails once that one shuts down, which is
    // sqlx's affair, not the committer's.
    let main = common::multi_thread_runtime();
    let store = main.block_on(async {
        let store = one_transaction_at_a_time().await;
        let all = futures_util::future::try_join_all(
            (0..es_testkit::postgres::POOL_SIZE).map(|_| store.pool().acquire()),
        )
        .await
        .unwrap();
        drop(all);
        store
    });
    let first = common::multi_thread_runtime();
    first.block_on(appends_share_one_transaction(&store, "first", 6));
    // Ends the committer and every task of the first runtime.
    drop(first);
    let second = common::multi_thread_runtime();
    second.block_on(appends_share_one_transaction(&store, "second", 6));
    drop(second);
    main.block_on(common::drop_schema(store));
}

/// A current-thread runtime runs its tasks only while it is driven: appends there take
/// the normal path, so a runtime left idle holds no committer that others would wait for.
#[test]
fn an_idle_current_thread_runtime_holds_no_appends_up() {
    let _serial = SERIAL.blocking_lock();
    let main = common::multi_thread_runtime();
    // The pool's connections belong to the runtime that keeps running.
    let store = main.block_on(common::fresh_store_with(|builder| {
        builder
            .coalesce_limits(64, 1)
            .reply_timeout(Some(Duration::from_secs(5)))
    }));
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let on_idle = idle
        .block_on(store.append(
            &stream("idle-1"),
            ExpectedVersion::NoStream,
            vec![note(1, 0)],
        ))
        .unwrap();
    assert_eq!(on_idle.version, Version::new(1));
    // `idle` is alive and driven by nobody from here on.
    main.block_on(async {
        // Four reply deadlines, were it queued to a task on the idle runtime.
        let appended = tokio::time::timeout(
            Duration::from_secs(10),
            store.append(
                &stream("direct-1"),
                ExpectedVersion::NoStream,
                vec![note(2, 0)],
            ),
        )
        .await
        .expect("the append waited for a committer on the idle runtime");
        appended.unwrap();
        appends_share_one_transaction(&store, "main", 6).await;
        common::drop_schema(store).await;
    });
    drop(idle);
}

/// Appends to a stream that already has one waiting cannot join the next batch: they run
/// alone at once, and take no place in the queue from appends to other streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_to_a_stream_with_one_waiting_run_alone_at_once() {
    let _serial = SERIAL.lock().await;
    // Room for four waiting appends, six queued.
    let store = common::fresh_store_with(|builder| builder.coalesce_limits(2, 1)).await;
    let (holder, blocker) = hold_committer(&store).await;
    let mut first = vec![
        appending(&store, "hot-1", ExpectedVersion::Any, vec![note(1, 0)]),
        appending(
            &store,
            "other-1",
            ExpectedVersion::NoStream,
            vec![note(2, 0)],
        ),
    ];
    queue_all(&mut first);
    // More than the queue and the room hold, all to the stream that has one waiting.
    let more = futures_util::future::join_all(
        (1..=12).map(|n| appending(&store, "hot-1", ExpectedVersion::Any, vec![note(1, n)])),
    );
    let more = tokio::time::timeout(Duration::from_secs(20), more)
        .await
        .expect("appends to a stream with one waiting waited for the committer");
    for appended in more {
        appended.unwrap();
    }
    // Another stream still gets its place.
    let mut later = vec![appending(
        &store,
        "other-2",
        ExpectedVersion::NoStream,
        vec![note(3, 0)],
    )];
    queue_all(&mut later);
    holder.rollback().await.unwrap();
    blocker.await.unwrap().unwrap();
    let stored: Vec<Committed<Note>> = futures_util::future::join_all(first)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let transactions: HashSet<u64> = stored.iter().map(transaction_of).collect();
    assert_eq!(
        transactions.len(),
        1,
        "the waiting appends shared one commit"
    );
    assert_eq!(stored[0].version, Version::new(13));
    // The next batch (two appends a batch).
    for appended in futures_util::future::join_all(later).await {
        appended.unwrap();
    }
    common::drop_schema(store).await;
}

/// A full queue sends an append alone at once: it never waits to be queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_beyond_a_full_queue_run_alone_at_once() {
    let _serial = SERIAL.lock().await;
    // Room for two waiting appends, three queued: at most five wait for the committer.
    let store = common::fresh_store_with(|builder| builder.coalesce_limits(1, 1)).await;
    let (holder, blocker) = hold_committer(&store).await;
    let appends: Vec<Appending<'_>> = (0..12)
        .map(|i| {
            appending(
                &store,
                &format!("fresh-{i}"),
                ExpectedVersion::NoStream,
                vec![note(i, 0)],
            )
        })
        .collect();
    let mut unordered: futures_util::stream::FuturesUnordered<_> = appends.into_iter().collect();
    let mut done = 0;
    let alone = tokio::time::timeout(Duration::from_secs(20), async {
        while done < 12 - 5 {
            unordered.next().await.unwrap().unwrap();
            done += 1;
        }
    })
    .await;
    assert!(
        alone.is_ok(),
        "only {done} appends ran alone while the committer was held"
    );
    holder.rollback().await.unwrap();
    blocker.await.unwrap().unwrap();
    while let Some(appended) = unordered.next().await {
        appended.unwrap();
    }
    drop(unordered);
    assert_eq!(log(&store).await.len(), 1 + 12);
    common::drop_schema(store).await;
}

fn padded(writer: u64, bytes: usize) -> NewEvent<Note> {
    NewEvent::new(Note::Padded {
        writer,
        padding: "x".repeat(bytes),
    })
}

/// A batch holds at most 4 MiB of events: an append above that runs alone at once, and
/// one that would take its batch above it waits for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_holds_a_bounded_number_of_bytes() {
    let _serial = SERIAL.lock().await;
    const MIB: usize = 1024 * 1024;
    let store = one_transaction_at_a_time().await;
    let (holder, blocker) = hold_committer(&store).await;
    let mut appends: Vec<Appending<'_>> = vec![
        appending(
            &store,
            "big-1",
            ExpectedVersion::NoStream,
            vec![padded(1, 3 * MIB)],
        ),
        appending(
            &store,
            "big-2",
            ExpectedVersion::NoStream,
            vec![padded(2, 3 * MIB)],
        ),
    ];
    appends.extend((0..4).map(|i| {
        appending(
            &store,
            &format!("small-{i}"),
            ExpectedVersion::NoStream,
            vec![note(10 + i, 0)],
        )
    }));
    queue_all(&mut appends);
    let huge = tokio::time::timeout(
        Duration::from_secs(20),
        store.append(
            &stream("huge-1"),
            ExpectedVersion::NoStream,
            vec![padded(3, 5 * MIB)],
        ),
    )
    .await
    .expect("an append above the batch's bytes waited for the committer");
    huge.unwrap();
    holder.rollback().await.unwrap();
    blocker.await.unwrap().unwrap();
    let stored: Vec<Committed<Note>> = futures_util::future::join_all(appends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let first = transaction_of(&stored[0]);
    assert!(
        stored[2..].iter().all(|c| transaction_of(c) == first),
        "the small appends joined the first large one"
    );
    assert_ne!(
        transaction_of(&stored[1]),
        first,
        "two large appends above the bytes of a batch shared it"
    );
    common::drop_schema(store).await;
}

/// What a test's subscriber writes.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A batch that falls back to running alone says why, in a span with its numbers of
/// appends and events, and logs no value of its events.
#[test]
fn a_batch_that_runs_alone_logs_why_and_no_values() {
    let _serial = SERIAL.blocking_lock();
    let captured = Captured::default();
    let writer = captured.clone();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    // On every thread of the runtime, where the committer's tasks run.
    let on_workers = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&on_workers)))
        .build()
        .unwrap();
    let _here = tracing::dispatcher::set_default(&dispatch);
    runtime.block_on(async {
        let store = one_transaction_at_a_time().await;
        let secret = NewEvent::new(Note::Padded {
            writer: 1,
            padding: "SECRET-VALUE".to_owned(),
        });
        store
            .append(
                &stream("secret-1"),
                ExpectedVersion::NoStream,
                vec![secret.clone()],
            )
            .await
            .unwrap();
        // Its id is taken: its batch's statement fails, and it runs alone.
        let clash = store
            .append(&stream("clash-1"), ExpectedVersion::NoStream, vec![secret])
            .await;
        assert!(
            matches!(clash, Err(AppendError::DuplicateEventId { .. })),
            "{clash:?}"
        );
        common::drop_schema(store).await;
    });
    drop(runtime);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|line| line.contains("coalesced batch failed"))
        .unwrap_or_else(|| panic!("no line says why the batch ran alone:\n{log}"));
    assert!(
        line.contains("coalesced_commit{appends=1 events=1}"),
        "not in the batch's span: {line}"
    );
    assert!(
        line.contains("events_event_id_key"),
        "not the error: {line}"
    );
    assert!(!log.contains("SECRET-VALUE"), "a value in the log:\n{log}");
}
