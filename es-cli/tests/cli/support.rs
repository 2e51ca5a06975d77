//! What every test of the `es` binary uses: running it (the stock one, or the `embedded`
//! example) within the connection budget, and writing events and parked events to look at.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use es_core::{
    DeadLetterStore as _, EventStore as _, ExpectedVersion, Metadata, NewEvent, ParkedEvent,
    Position, RawEvent, StreamId, Version,
};
use es_postgres::PgEventStore;
use es_testkit::postgres::{database_url, hold_connections};
use serde_json::{Value, json};
use uuid::Uuid;

/// Bounds every run of the binary; nothing here measures speed.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// What a run of the binary gave.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// Succeeded, with no colour codes (not a terminal) and nothing on stderr.
    #[track_caller]
    pub(crate) fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{self:?}");
        assert!(
            !self.stdout.contains('\x1b'),
            "colours off a terminal: {self:?}"
        );
        self
    }

    /// Failed with `code` and one line on stderr holding `message`.
    #[track_caller]
    pub(crate) fn fails(self, code: i32, message: &str) -> Self {
        assert_eq!(self.code, code, "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:?}");
        assert!(self.stderr.starts_with("error: "), "{self:?}");
        assert!(self.stderr.contains(message), "{message:?} in {self:?}");
        assert!(!self.stderr.contains("panicked"), "{self:?}");
        self
    }
}

/// The stock `es`.
pub(crate) fn es_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_es"))
}

/// The `embedded` example: an application's `es`, with the `stream-sizes` projection and
/// an AsyncAPI document registered. `cargo test` builds the examples beside the tests.
pub(crate) fn app_binary() -> PathBuf {
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
pub(crate) async fn run_with(binary: PathBuf, env: &[(&str, &str)], args: &[&str]) -> Run {
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
pub(crate) async fn es(store: &PgEventStore, args: &[&str]) -> Run {
    let mut all = vec!["--schema", store.schema().as_str()];
    all.extend_from_slice(args);
    run_with(es_binary(), &[], &all).await
}

/// The application's `es`, on the store's schema.
pub(crate) async fn app(store: &PgEventStore, args: &[&str]) -> Run {
    let mut all = vec!["--schema", store.schema().as_str()];
    all.extend_from_slice(args);
    run_with(app_binary(), &[], &all).await
}

/// Appends one event of `event_type` to `stream`, returning its position and id.
pub(crate) async fn append(
    store: &PgEventStore,
    stream: &str,
    event_type: &str,
) -> (Position, Uuid) {
    append_with(store, stream, event_type, Metadata::new()).await
}

pub(crate) async fn append_with(
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
pub(crate) async fn settle(store: &PgEventStore) {
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

/// Parks `event_id` (of `stream`, at `position`) for `projection`.
pub(crate) async fn park(
    store: &PgEventStore,
    projection: &str,
    event_id: Uuid,
    position: Position,
) {
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

/// The rows of the `embedded` example's read model.
pub(crate) async fn stream_sizes(store: &PgEventStore) -> Vec<(String, i64)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT stream_id, events FROM \"{}\".stream_sizes ORDER BY stream_id",
        store.schema()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap()
}
