//! `es projections`, and what runs the application's code: rebuild, reset and the
//! AsyncAPI document, through the `embedded` example (an application's own `es`).

use std::time::Duration;

use es_core::{CheckpointStore as _, LeaseStore as _};
use es_testkit::postgres::{drop_schema, fresh_store};
use serde_json::{Value, json};
use uuid::Uuid;

use super::support::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_checkpoints_waits_for_no_runner() {
    let store = fresh_store().await;
    let (first, _) = append(&store, "order-1", "OrderPlaced").await;
    settle(&store).await;
    store.save_checkpoint("totals", first).await.unwrap();
    // A runner still going would save its checkpoint again at its next commit.
    let runner = Uuid::now_v7();
    store
        .acquire_lease("totals", runner, Duration::from_secs(60))
        .await
        .unwrap();
    es(
        &store,
        &["projections", "reset", "totals", "--checkpoint-only"],
    )
    .await
    .fails(1, "projection `totals` is running elsewhere");
    assert_eq!(store.load_checkpoint("totals").await.unwrap(), Some(first));
    assert!(
        store
            .renew_lease("totals", runner, Duration::from_secs(60))
            .await
            .unwrap(),
        "the runner's lease is left to it"
    );

    store.release_lease("totals", runner).await.unwrap();
    es(
        &store,
        &["projections", "reset", "totals", "--checkpoint-only"],
    )
    .await
    .ok();
    assert_eq!(store.load_checkpoint("totals").await.unwrap(), None);
    assert!(
        store
            .acquire_lease("totals", Uuid::now_v7(), Duration::from_secs(60))
            .await
            .unwrap(),
        "given up after"
    );
    drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_partition_stops_resets_and_rebuilds() {
    let store = fresh_store().await;
    append(&store, "order-1", "OrderPlaced").await;
    let (last, _) = append(&store, "order-2", "OrderPlaced").await;
    settle(&store).await;
    app(&store, &["projections", "rebuild", "stream-sizes"])
        .await
        .ok();
    let built = stream_sizes(&store).await;
    assert_eq!(built.len(), 2);
    // The application runs the projection in two partitions; one of them is running.
    store
        .save_checkpoint("stream-sizes#1/2", last)
        .await
        .unwrap();
    let runner = Uuid::now_v7();
    store
        .acquire_lease("stream-sizes#2/2", runner, Duration::from_secs(60))
        .await
        .unwrap();
    // A rebuild (one runner of the whole log) would forget the partitions' checkpoints
    // and leave only its own at the head: their runners would replay the whole log on
    // top of the rebuilt model. It is refused, running or not.
    let partitioned = "projection `stream-sizes` runs in partitions (`stream-sizes#1/2`)";
    let rebuild = app(&store, &["projections", "rebuild", "stream-sizes"])
        .await
        .fails(1, partitioned);
    assert!(
        rebuild
            .stderr
            .contains("run `es projections reset stream-sizes`"),
        "says what to do: {rebuild:?}"
    );
    for args in [
        &["projections", "reset", "stream-sizes"][..],
        &["projections", "reset", "stream-sizes", "--checkpoint-only"],
    ] {
        app(&store, args)
            .await
            .fails(1, "projection `stream-sizes#2/2` is running elsewhere");
        assert_eq!(stream_sizes(&store).await, built, "{args:?}");
        assert_eq!(
            store.load_checkpoint("stream-sizes#1/2").await.unwrap(),
            Some(last),
            "{args:?}"
        );
        assert!(
            store
                .load_checkpoint("stream-sizes")
                .await
                .unwrap()
                .is_some(),
            "{args:?}"
        );
        // Nothing stays taken: the other partition's runner and the projection's own
        // can start.
        for key in ["stream-sizes", "stream-sizes#1/2"] {
            let owner = Uuid::now_v7();
            assert!(
                store
                    .acquire_lease(key, owner, Duration::from_secs(60))
                    .await
                    .unwrap(),
                "{key} after {args:?}"
            );
            store.release_lease(key, owner).await.unwrap();
        }
    }

    // The partition runners stopped: a rebuild is still refused (their checkpoints say
    // how the application runs it), and a reset is what to do.
    store
        .release_lease("stream-sizes#2/2", runner)
        .await
        .unwrap();
    app(&store, &["projections", "rebuild", "stream-sizes"])
        .await
        .fails(1, partitioned);
    assert_eq!(stream_sizes(&store).await, built);
    let reset = app(&store, &["projections", "reset", "stream-sizes"])
        .await
        .ok();
    assert!(
        reset.stdout.contains("forgot 2 checkpoint(s)"),
        "its own and the partition's: {reset:?}"
    );
    assert!(stream_sizes(&store).await.is_empty());
    // Every partition's runner starts again from the beginning of the log (no
    // checkpoint is left at the head), rebuilding it between them.
    for key in ["stream-sizes", "stream-sizes#1/2", "stream-sizes#2/2"] {
        assert_eq!(store.load_checkpoint(key).await.unwrap(), None, "{key}");
    }
    drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    clippy::disallowed_methods,
    reason = "holds a transaction open on purpose: the lock the reset waits on"
)]
async fn ctrl_c_stops_a_reset_and_gives_its_leases_up() {
    let store = fresh_store().await;
    let (first, _) = append(&store, "order-1", "OrderPlaced").await;
    settle(&store).await;
    store.save_checkpoint("totals", first).await.unwrap();
    // The checkpoint's row is locked: the reset waits on it, holding its leases.
    let mut lock = store.pool().begin().await.unwrap();
    let sql = format!(
        "SELECT 1 FROM \"{}\".checkpoints WHERE name = 'totals' FOR UPDATE",
        store.schema()
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut *lock)
        .await
        .unwrap();

    let _permit = es_testkit::postgres::hold_connections(3).await;
    let mut child = std::process::Command::new(es_binary())
        .env("DATABASE_URL", es_testkit::postgres::database_url())
        .env_remove("ES_SCHEMA")
        .args([
            "--schema",
            store.schema().as_str(),
            "projections",
            "reset",
            "totals",
            "--checkpoint-only",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let held = format!(
        "SELECT count(*) FROM \"{}\".leases WHERE name = 'totals' AND expires_at > now()",
        store.schema()
    );
    loop {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(held.clone()))
            .fetch_one(store.pool())
            .await
            .unwrap();
        if count == 1 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "es ended before taking the lease"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "es never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = tokio::task::spawn_blocking(move || {
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    };
    run.fails(130, "interrupted: stopped working on projection `totals`");
    // Given up, not left to run out: the application's runner starts at once.
    assert!(
        store
            .acquire_lease("totals", Uuid::now_v7(), Duration::from_secs(60))
            .await
            .unwrap()
    );
    lock.rollback().await.unwrap();
    // The delete es had sent was still waiting on the lock when it gave up: once the lock
    // is gone and that session has ended, the checkpoint must still be there (rolled back
    // with its client, not committed after it). An idle session shows its last statement
    // too: this very count, run on another of the pool's connections, would match itself.
    let orphans = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
         AND state <> 'idle' AND query LIKE '%{}%checkpoints%'",
        store.schema()
    );
    loop {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(orphans.clone()))
            .fetch_one(store.pool())
            .await
            .unwrap();
        if count == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the orphaned delete never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.load_checkpoint("totals").await.unwrap(), Some(first));
    drop_schema(store).await;
}
