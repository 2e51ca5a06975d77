//! The `es` binary end to end, against the real PostgreSQL: every command's table and
//! `--json` output, `migrate --check`'s exit codes, a bounded `tail`, rebuild, reset and
//! parked retry through an application's own binary (the `embedded` example, which
//! registers a projection), and the error cases (bad URL, unreachable server, schema never
//! migrated, unknown stream, unknown or unregistered projection).
//!
//! Each test has a schema of its own (es-testkit), and every run of the binary takes the
//! connections it may open (two, and a listener for `tail`) from the test's budget.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use es_core::{
    CheckpointStore as _, DeadLetterStore as _, EventStore as _, ExpectedVersion, LeaseStore as _,
    Metadata, NewEvent, ParkedEvent, Position, RawEvent, StreamId, Version,
};
use es_postgres::PgEventStore;
use es_testkit::postgres::{database_url, drop_schema, fresh_store, hold_connections};
use serde_json::{Value, json};
use uuid::Uuid;

/// Bounds every run of the binary; nothing here measures speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// What a run of the binary gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// Succeeded, with no colour codes (not a terminal) and nothing on stderr.
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        assert!(
            !self.stdout.contains('\x1b'),
            "colours off a terminal: {self:?}"
        );
        self
    }

    /// Failed with `code` and one line on stderr holding `message`.
    #[track_caller]
    fn fails(self, code: i32, message: &str) -> Self {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:?}");
        assert!(self.stderr.starts_with("error: "), "{self:?}");
        assert!(self.stderr.contains(message), "{message:?} in {self:?}");
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        self
    }
}

/// The stock `es`.
fn es_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_es"))
}

/// The `embedded` example: an application's `es`, with the `stream-sizes` projection and
/// an AsyncAPI document registered. `cargo test` builds the examples beside the tests.
fn app_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let app = profile.join("examples").join("embedded");
    assert!(
        app.exists(),
        "{} is built by `cargo test -p es-cli`",
        app.display()
    );
    app
}

/// Runs `binary` with `args` and the environment a script would give it: `DATABASE_URL`
/// and no terminal.
async fn run_with(binary: PathBuf, env: &[(&str, &str)], args: &[&str]) -> Run {
    let _permit = hold_connections(3).await;
    let mut command = assert_cmd::Command::new(binary);
    command
        .env("DATABASE_URL", database_url())
        .env_remove("ES_SCHEMA")
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .args(args)
        .timeout(PATIENCE);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `es --schema <the store's> args...`.
async fn es(store: &PgEventStore, args: &[&str]) -> Run {
    let mut all = vec!["--schema", store.schema().as_str()];
    all.extend_from_slice(args);
    run_with(es_binary(), &[], &all).await
}

/// The application's `es`, on the store's schema.
async fn app(store: &PgEventStore, args: &[&str]) -> Run {
    let mut all = vec!["--schema", store.schema().as_str()];
    all.extend_from_slice(args);
    run_with(app_binary(), &[], &all).await
}

/// Appends one event of `event_type` to `stream`, returning its position and id.
async fn append(store: &PgEventStore, stream: &str, event_type: &str) -> (Position, Uuid) {
    append_with(store, stream, event_type, Metadata::new()).await
}

async fn append_with(
    store: &PgEventStore,
    stream: &str,
    event_type: &str,
    metadata: Metadata,
) -> (Position, Uuid) {
    let stream = StreamId::parse(stream).unwrap();
    let event =
        NewEvent::new(RawEvent::new(event_type, 1, json!({ "amount": 5 }))).with_metadata(metadata);
    let committed = store
        .append(&stream, ExpectedVersion::Any, vec![event])
        .await
        .unwrap();
    let event = &committed.events[0];
    (event.position, event.event_id)
}

/// Waits until everything appended so far is readable (other tests' transactions may hold
/// the horizon for a moment).
async fn settle(store: &PgEventStore) {
    let head = store.head().await.unwrap().unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    while !store.readable(head).await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "the log stays held back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_check_fails_until_the_schema_is_migrated() {
    let store = fresh_store().await;
    let schema = format!("{}_m", store.schema());
    let unmigrated = PgEventStore::builder(store.pool().clone())
        .schema(&schema)
        .unwrap()
        .build();

    es(&unmigrated, &["migrate", "--check"])
        .await
        .fails(3, "behind the 6 this es needs: run `es migrate`");
    let behind = es(&unmigrated, &["migrate", "--check", "--json"]).await;
    assert_eq!(behind.code, 3);
    assert_eq!(behind.json()["current"], false);
    es(&unmigrated, &["streams"])
        .await
        .fails(3, "it was never migrated");

    let migrated = es(&unmigrated, &["migrate"]).await.ok();
    assert!(
        migrated
            .stdout
            .contains(&format!("migrated schema `{schema}` from version 0 to 6")),
        "{migrated:?}"
    );
    let check = es(&unmigrated, &["migrate", "--check"]).await.ok();
    assert!(
        check.stdout.contains("is up to date (version 6)"),
        "{check:?}"
    );
    let check = es(&unmigrated, &["migrate", "--check", "--json"])
        .await
        .ok();
    assert_eq!(
        check.json(),
        json!({ "schema": schema, "applied": 6, "latest": 6, "current": true })
    );
    let again = es(&unmigrated, &["migrate", "--json"]).await.ok().json();
    assert_eq!(
        (again["previous"].clone(), again["applied"].clone()),
        (json!(6), json!(6))
    );
    drop_schema(unmigrated).await;
    drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_listed_as_a_table_and_as_json() {
    let store = fresh_store().await;
    append(&store, "order-1", "OrderPlaced").await;
    append(&store, "order-1", "OrderShipped").await;
    append(&store, "order-2", "OrderPlaced").await;
    append(&store, "customer-7", "CustomerJoined").await;
    store
        .archive_stream(&StreamId::parse("order-2").unwrap())
        .await
        .unwrap();

    let table = es(&store, &["streams"]).await.ok().stdout;
    for expected in [
        "stream",
        "events",
        "version",
        "archived",
        "order-1",
        "customer-7",
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
    let row = table.lines().find(|l| l.contains("order-2")).unwrap();
    assert!(row.contains("yes"), "archived: {row}");

    let json = es(&store, &["streams", "--json"]).await.ok().json();
    let streams = json.as_array().unwrap();
    assert_eq!(streams.len(), 3);
    let first = &streams[0];
    assert_eq!(first["stream_id"], "customer-7");
    assert_eq!(first["category"], "customer");
    assert_eq!(
        (first["events"].clone(), first["version"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(first["archived"], false);
    assert!(first["first_recorded_at"].is_string() && first["last_recorded_at"].is_string());
    assert_eq!(streams[2]["archived"], true);

    let orders = es(&store, &["streams", "--category", "order", "--json"])
        .await
        .ok()
        .json();
    let ids: Vec<_> = orders
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream_id"].clone())
        .collect();
    assert_eq!(ids, [json!("order-1"), json!("order-2")]);
    let order_1 = &orders[0];
    assert_eq!(
        (order_1["events"].clone(), order_1["version"].clone()),
        (json!(2), json!(2))
    );

    let limited = es(&store, &["streams", "--limit", "1"]).await.ok().stdout;
    assert!(
        limited.contains("customer-7") && !limited.contains("order-1"),
        "{limited}"
    );
    assert!(
        limited.contains("the first 1 streams; pass --limit for more"),
        "{limited}"
    );
    let none = es(&store, &["streams", "--category", "invoice"]).await.ok();
    assert_eq!(none.stdout.trim(), "no streams in category `invoice`");
    drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_the_history_with_metadata_and_travels_in_time() {
    let store = fresh_store().await;
    let correlation = Uuid::now_v7();
    let metadata = Metadata::new()
        .with_correlation_id(correlation)
        .with_actor("ada")
        .with_user("tenant", "acme");
    append_with(&store, "order-1", "OrderPlaced", metadata).await;
    append(&store, "order-1", "OrderPaid").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    append(&store, "order-1", "OrderShipped").await;

    let table = es(&store, &["show", "order-1"]).await.ok().stdout;
    assert!(table.starts_with("stream `order-1`: 3 events"), "{table}");
    for expected in [
        "OrderPlaced v1",
        "OrderPaid v1",
        "OrderShipped v1",
        "actor ada",
        "tenant",
        "acme",
        r#""amount":5"#,
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }

    let history = es(&store, &["show", "order-1", "--json"]).await.ok().json();
    let events = history.as_array().unwrap();
    assert_eq!(events.len(), 3);
    let placed = &events[0];
    for field in ["event_id", "position", "recorded_at"] {
        assert!(placed[field].is_string(), "{field} in {placed}");
    }
    assert_eq!(placed["stream_id"], "order-1");
    assert_eq!(placed["version"], 1);
    assert_eq!(placed["event_type"], "OrderPlaced");
    assert_eq!(placed["schema_version"], 1);
    assert_eq!(placed["correlation_id"], correlation.to_string());
    assert_eq!(placed["causation_id"], Value::Null);
    assert_eq!(placed["actor"], "ada");
    assert_eq!(placed["metadata"], json!({ "tenant": "acme" }));
    assert_eq!(placed["payload"], json!({ "amount": 5 }));

    let at_two = es(&store, &["show", "order-1", "--as-of", "2", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(at_two.as_array().unwrap().len(), 2);
    let paid_at = events[1]["recorded_at"].as_str().unwrap();
    let then = es(&store, &["show", "order-1", "--as-of", paid_at, "--json"])
        .await
        .ok()
        .json();
    let types: Vec<_> = then
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].clone())
        .collect();
    assert_eq!(types, [json!("OrderPlaced"), json!("OrderPaid")]);
    let table = es(&store, &["show", "order-1", "--as-of", "1"])
        .await
        .ok()
        .stdout;
    assert!(
        table.starts_with("stream `order-1` as of version 1: 1 events"),
        "{table}"
    );

    es(&store, &["show", "order-9"])
        .await
        .fails(1, "no stream `order-9`");
    es(&store, &["show", "no_separator"])
        .await
        .fails(1, "is not a stream id");
    let usage = es(&store, &["show", "order-1", "--as-of", "yesterday"]).await;
    assert_eq!(usage.code, 2, "{usage:?}");
    drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_the_log_within_its_bounds() {
    let store = fresh_store().await;
    append(&store, "order-1", "OrderPlaced").await;
    append(&store, "customer-1", "CustomerJoined").await;
    let (last, _) = append(&store, "order-2", "OrderPlaced").await;
    settle(&store).await;

    let two = es(
        &store,
        &["tail", "--from", "start", "--limit", "2", "--json"],
    )
    .await
    .ok();
    let lines: Vec<Value> = two
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let streams: Vec<_> = lines.iter().map(|e| e["stream_id"].clone()).collect();
    assert_eq!(streams, [json!("order-1"), json!("customer-1")]);

    let orders = es(
        &store,
        &[
            "tail",
            "--from",
            "start",
            "--category",
            "order",
            "--timeout",
            "1s",
        ],
    )
    .await
    .ok();
    let shown: Vec<_> = orders.stdout.lines().collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown.iter().all(|l| l.contains("OrderPlaced")), "{shown:?}");
    let types = es(
        &store,
        &[
            "tail",
            "--from",
            "start",
            "--event-type",
            "CustomerJoined",
            "--timeout",
            "1s",
        ],
    )
    .await
    .ok();
    assert_eq!(types.stdout.lines().count(), 1, "{types:?}");

    let quiet = es(&store, &["tail", "--timeout", "500ms"]).await.ok();
    assert_eq!(quiet.stdout, "", "nothing new after the end");

    // Live: an event appended while it waits, after the position it starts from.
    let from = last.to_string();
    let schema = store.schema().as_str().to_owned();
    let waiting = tokio::spawn(async move {
        run_with(
            es_binary(),
            &[],
            &[
                "--schema",
                &schema,
                "tail",
                "--from",
                &from,
                "--limit",
                "1",
                "--timeout",
                "30s",
                "--json",
            ],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&store, "order-3", "OrderPlaced").await;
    let live = waiting.await.unwrap().ok();
    let event: Value = serde_json::from_str(live.stdout.trim()).unwrap();
    assert_eq!(event["stream_id"], "order-3");

    let usage = es(&store, &["tail", "--from", "middle"]).await;
    assert_eq!(usage.code, 2, "{usage:?}");
    drop_schema(store).await;
}

/// Parks `event_id` (of `stream`, at `position`) for `projection`.
async fn park(store: &PgEventStore, projection: &str, event_id: Uuid, position: Position) {
    store
        .park(ParkedEvent {
            projection: projection.to_owned(),
            event_id,
            stream_id: StreamId::parse("order-1").unwrap(),
            version: Version::new(1),
            position,
            event_type: "OrderPlaced".to_owned(),
            error: "no such customer".to_owned(),
            attempts: 3,
            parked_at: Utc::now(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_show_status_position_lag_error_and_lease() {
    let store = fresh_store().await;
    let (first, event_id) = append(&store, "order-1", "OrderPlaced").await;
    append(&store, "order-1", "OrderPaid").await;
    settle(&store).await;
    store.save_checkpoint("open-orders", first).await.unwrap();
    let owner = Uuid::now_v7();
    store
        .acquire_lease("open-orders", owner, Duration::from_secs(60))
        .await
        .unwrap();
    park(&store, "open-orders", event_id, first).await;
    store.save_checkpoint("totals", first).await.unwrap();

    let table = es(&store, &["projections"]).await.ok().stdout;
    for expected in [
        "projection",
        "status",
        "position",
        "lag",
        "parked",
        "last error",
        "lease holder",
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
    let row = table.lines().find(|l| l.contains("open-orders")).unwrap();
    for expected in [
        "(not registered)",
        "running",
        &first.to_string(),
        "no such customer",
        &owner.simple().to_string()[..8],
    ] {
        assert!(row.contains(expected), "{expected:?} in {row}");
    }
    let row = table.lines().find(|l| l.contains("totals")).unwrap();
    assert!(row.contains("stopped"), "{row}");

    let json = es(&store, &["projections", "--json"]).await.ok().json();
    let open = &json[0];
    assert_eq!(open["name"], "open-orders");
    assert_eq!(open["registered"], false);
    assert_eq!(open["status"], "running");
    assert_eq!(open["checkpoint"], first.to_string());
    assert!(open["checkpoint_updated_at"].is_string());
    assert_eq!(open["lag"], 1);
    assert_eq!(open["parked"], 1);
    assert_eq!(open["last_error"], "no such customer");
    assert!(open["last_parked_at"].is_string());
    assert_eq!(open["lease"]["owner"], owner.to_string());
    assert_eq!(open["lease"]["held"], true);
    assert!(open["lease"]["expires_at"].is_string());
    assert_eq!(json[1]["name"], "totals");
    assert_eq!(json[1]["lease"], Value::Null);

    // The stock binary runs no projection code, and says how to get one that does.
    es(&store, &["projections", "rebuild", "open-orders"])
        .await
        .fails(
            1,
            "is not registered in this binary, and a rebuild runs its code",
        );
    es(&store, &["projections", "reset", "open-orders"])
        .await
        .fails(1, "--checkpoint-only");
    es(
        &store,
        &["projections", "reset", "nothing", "--checkpoint-only"],
    )
    .await
    .fails(1, "no projection `nothing`");
    let reset = es(
        &store,
        &[
            "projections",
            "reset",
            "totals",
            "--checkpoint-only",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(
        reset,
        json!({ "projection": "totals", "checkpoints_forgotten": 1, "read_model_reset": false })
    );
    assert_eq!(store.load_checkpoint("totals").await.unwrap(), None);
    drop_schema(store).await;
}

/// The rows of the `embedded` example's read model.
async fn stream_sizes(store: &PgEventStore) -> Vec<(String, i64)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT stream_id, events FROM \"{}\".stream_sizes ORDER BY stream_id",
        store.schema()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_binary_rebuilds_and_resets_its_projection() {
    let store = fresh_store().await;
    append(&store, "order-1", "OrderPlaced").await;
    append(&store, "order-1", "OrderPaid").await;
    append(&store, "order-2", "OrderPlaced").await;
    settle(&store).await;

    let listed = app(&store, &["projections", "--json"]).await.ok().json();
    assert_eq!(listed[0]["name"], "stream-sizes");
    assert_eq!(listed[0]["registered"], true);
    assert_eq!(listed[0]["status"], "not started");
    assert_eq!(listed[0]["lag"], 3);

    let rebuilt = app(
        &store,
        &["projections", "rebuild", "stream-sizes", "--json"],
    )
    .await
    .ok();
    assert_eq!(
        rebuilt.json(),
        json!({ "projection": "stream-sizes", "handled": 3 })
    );
    assert_eq!(
        stream_sizes(&store).await,
        [("order-1".to_owned(), 2), ("order-2".to_owned(), 1)]
    );
    let again = app(&store, &["projections", "rebuild", "stream-sizes"])
        .await
        .ok();
    assert!(
        again
            .stdout
            .contains("rebuilt projection `stream-sizes`: 3 events handled"),
        "{again:?}"
    );
    assert_eq!(
        stream_sizes(&store).await.len(),
        2,
        "emptied before the replay"
    );
    let listed = app(&store, &["projections", "--json"]).await.ok().json();
    assert_eq!(
        (listed[0]["status"].clone(), listed[0]["lag"].clone()),
        (json!("stopped"), json!(0))
    );

    let reset = app(&store, &["projections", "reset", "stream-sizes"])
        .await
        .ok();
    assert!(
        reset
            .stdout
            .contains("emptied its read model and forgot 1 checkpoint(s)"),
        "{reset:?}"
    );
    assert!(stream_sizes(&store).await.is_empty());
    assert_eq!(store.load_checkpoint("stream-sizes").await.unwrap(), None);

    // Not while a runner of the application holds the lease.
    store
        .acquire_lease("stream-sizes", Uuid::now_v7(), Duration::from_secs(60))
        .await
        .unwrap();
    app(&store, &["projections", "rebuild", "stream-sizes"])
        .await
        .fails(1, "projection `stream-sizes` is running elsewhere");
    app(&store, &["projections", "reset", "stream-sizes"])
        .await
        .fails(1, "is running elsewhere");
    app(&store, &["projections", "rebuild", "other"])
        .await
        .fails(1, "projection `other` is not registered");
    drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_are_listed_and_retried_by_the_application() {
    let store = fresh_store().await;
    let (position, event_id) = append(&store, "order-1", "OrderPlaced").await;
    let (other_position, other_id) = append(&store, "order-1", "OrderPaid").await;
    settle(&store).await;
    park(&store, "stream-sizes", event_id, position).await;
    park(&store, "stream-sizes", other_id, other_position).await;
    park(&store, "audit", event_id, position).await;

    let table = es(&store, &["parked"]).await.ok().stdout;
    for expected in [
        "projection",
        "event",
        "attempts",
        "error",
        "audit",
        "stream-sizes",
        &event_id.to_string(),
        "no such customer",
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
    let json = es(&store, &["parked", "stream-sizes", "--json"])
        .await
        .ok()
        .json();
    let parked = json.as_array().unwrap();
    assert_eq!(parked.len(), 2);
    let first = &parked[0];
    assert_eq!(first["projection"], "stream-sizes");
    assert_eq!(first["event_id"], event_id.to_string());
    assert_eq!(first["stream_id"], "order-1");
    assert_eq!(first["version"], 1);
    assert_eq!(first["position"], position.to_string());
    assert_eq!(first["event_type"], "OrderPlaced");
    assert_eq!(first["error"], "no such customer");
    assert_eq!(first["attempts"], 3);
    assert!(first["parked_at"].is_string());
    es(&store, &["parked", "nothing"])
        .await
        .fails(1, "no projection `nothing`");
    es(&store, &["parked", "retry", "stream-sizes"])
        .await
        .fails(
            1,
            "is not registered in this binary, and a retry runs its code",
        );

    app(
        &store,
        &[
            "parked",
            "retry",
            "stream-sizes",
            &Uuid::now_v7().to_string(),
        ],
    )
    .await
    .fails(1, "is not parked for projection `stream-sizes`");
    let one = app(
        &store,
        &[
            "parked",
            "retry",
            "stream-sizes",
            &event_id.to_string(),
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(
        one,
        json!({ "projection": "stream-sizes", "retried": 1, "handled": 1, "still_parked": 0 })
    );
    let left = store.parked("stream-sizes").await.unwrap();
    assert_eq!(
        left.iter().map(|p| p.event_id).collect::<Vec<_>>(),
        [other_id]
    );
    assert_eq!(stream_sizes(&store).await, [("order-1".to_owned(), 1)]);
    let rest = app(&store, &["parked", "retry", "stream-sizes"]).await.ok();
    assert!(
        rest.stdout
            .contains("retried 1 parked event(s) of projection `stream-sizes`: 1 handled"),
        "{rest:?}"
    );
    assert!(store.parked("stream-sizes").await.unwrap().is_empty());
    assert_eq!(
        store.parked("audit").await.unwrap().len(),
        1,
        "another projection's stay"
    );
    drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn horizon_names_the_transaction_that_holds_the_log() {
    let store = fresh_store().await;
    append(&store, "order-1", "OrderPlaced").await;
    let mut holder = store.pool().acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *holder).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *holder)
        .await
        .unwrap();
    append(&store, "order-1", "OrderPaid").await;

    // Other tests' transactions may be older for a moment: look until ours is the oldest.
    let mut seen = Value::Null;
    for _ in 0..50 {
        seen = es(&store, &["horizon", "--json"]).await.ok().json();
        if seen["held_by"]["pid"] == pid {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["held"], true, "{seen}");
    assert_eq!(seen["held_by"]["pid"], pid, "{seen}");
    assert_eq!(seen["held_by"]["state"], "idle in transaction", "{seen}");
    assert!(seen["events_waiting"].as_u64().unwrap() >= 1, "{seen}");
    assert!(seen["oldest_transaction_age"].is_string(), "{seen}");
    assert!(seen["oldest_running_transaction"].is_u64(), "{seen}");
    assert!(
        seen["summary"]
            .as_str()
            .unwrap()
            .contains("events wait behind transaction")
    );
    let table = es(&store, &["horizon"]).await.ok().stdout;
    for expected in [
        "oldest running transaction",
        "events waiting",
        "open for",
        "backend pid",
    ] {
        assert!(table.contains(expected), "{expected:?} in\n{table}");
    }
    sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
    drop(holder);
    drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_are_one_line_without_the_password() {
    let unreachable = run_with(
        es_binary(),
        &[(
            "DATABASE_URL",
            "postgres://app:hunter2secret@127.0.0.1:1/orders",
        )],
        &["streams"],
    )
    .await
    .fails(1, "cannot connect to PostgreSQL at");
    assert!(
        !unreachable.stderr.contains("hunter2secret"),
        "{unreachable:?}"
    );
    assert!(unreachable.stderr.contains("127.0.0.1"), "{unreachable:?}");

    for url in [
        "not a url at all",
        "postgres://app:hunter2secret@127.0.0.1:notaport/orders",
        "mysql://app:hunter2secret@127.0.0.1/orders",
    ] {
        let bad = run_with(es_binary(), &[("DATABASE_URL", url)], &["projections"])
            .await
            .fails(1, "cannot connect to PostgreSQL");
        assert!(!bad.stderr.contains("hunter2secret"), "{bad:?}");
    }
    let flag = run_with(
        es_binary(),
        &[],
        &[
            "--database-url",
            "postgres://app:hunter2secret@127.0.0.1:1/orders",
            "horizon",
        ],
    )
    .await
    .fails(1, "cannot connect");
    assert!(!flag.stderr.contains("hunter2secret"), "{flag:?}");

    let mut command = assert_cmd::Command::new(es_binary());
    let output = command
        .env_remove("DATABASE_URL")
        .args(["streams"])
        .timeout(PATIENCE)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("set DATABASE_URL or pass --database-url")
    );

    // `--help` does not print the environment's URL either.
    let help = run_with(
        es_binary(),
        &[(
            "DATABASE_URL",
            "postgres://app:hunter2secret@127.0.0.1:1/orders",
        )],
        &["--help"],
    )
    .await
    .ok();
    assert!(
        help.stdout.contains("DATABASE_URL") && !help.stdout.contains("hunter2secret"),
        "{help:?}"
    );
    let invalid_schema = run_with(es_binary(), &[], &["--schema", "Bad Name", "streams"])
        .await
        .fails(1, "Bad Name");
    assert_eq!(invalid_schema.stdout, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncapi_prints_what_the_application_registered() {
    run_with(es_binary(), &[], &["asyncapi"])
        .await
        .fails(1, "this binary has no AsyncAPI document: register");
    let yaml = run_with(app_binary(), &[], &["asyncapi"]).await.ok();
    assert!(yaml.stdout.starts_with("asyncapi: 3.0.0"), "{yaml:?}");
    assert!(yaml.stdout.contains("title: Stream sizes"), "{yaml:?}");
    let json = run_with(app_binary(), &[], &["asyncapi", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(json["asyncapi"], "3.0.0");
    assert_eq!(json["info"]["title"], "Stream sizes");
}
