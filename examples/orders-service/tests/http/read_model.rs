//! The read model: reads of your writes, a stale read model, resuming after a restart,
//! several instances on one table, a table made before it was declared.

use std::time::Duration;

use es_postgres::PgEventStore;
use orders_service::{Backend, Config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{
    Fixture, PATIENCE, assert_error, client, get, json_of, on_both_stores, order_id, place, post,
    serve,
};

/// Reads of your writes wait a moment only, so that the stale case answers soon (the
/// case that must catch up keeps the default wait: on a loaded machine the runner may
/// take longer than this moment).
fn short_read_wait() -> Config {
    Config {
        read_wait: Duration::from_millis(300),
        ..Config::default()
    }
}

on_both_stores!(
    read_model_reads_your_writes,
    orders_service::Config::default()
);

async fn read_model_reads_your_writes(fixture: &Fixture) {
    let id = order_id();
    let placed = place(fixture, &id, 700).await;
    let position = placed["position"].as_str().expect("a position").to_owned();

    let list = |status: &'static str, after: String| {
        let url = fixture.url("/orders");
        async move {
            let response = client()
                .get(url)
                .query(&[("status", status), ("after", &after)])
                .send()
                .await
                .expect("answered");
            json_of(response).await
        }
    };
    // Straight after the write, with its position: the read model includes it.
    let (status, body) = list("placed", position.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["orders"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| o["order_id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, [id.as_str()]);
    assert_eq!(body["orders"][0]["customer"], "ada");
    assert_eq!(body["orders"][0]["total_cents"], 700);
    assert!(body["checkpoint"].is_string(), "{body}");

    let (status, paid) = json_of(
        post(
            fixture,
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": 700, "reference": "r" }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    let position = paid["position"].as_str().expect("a position").to_owned();
    let (status, body) = list("paid", position.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["orders"][0]["order_id"], id.as_str());
    assert_eq!(body["orders"][0]["paid_cents"], 700);
    assert_eq!(body["orders"][0]["version"], 2);
    let (_, placed_now) = list("placed", position).await;
    assert_eq!(placed_now["orders"], json!([]), "no longer placed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_model_behind_is_stale() {
    use es_core::LeaseStore as _;

    // Another instance of the service holds the read model's lease: this one's runner
    // stands by, and its read model does not reach a new write.
    let store = es_testkit::postgres::fresh_store().await;
    let other = Uuid::now_v7();
    let held = store
        .acquire_lease(
            orders_service::read_model::NAME,
            other,
            Duration::from_secs(600),
        )
        .await
        .expect("the lease");
    assert!(held);
    let fixture = Fixture {
        running: serve(Backend::Postgres(store.clone()), short_read_wait()).await,
        store: Some(store.clone()),
    };
    let placed = place(&fixture, &order_id(), 700).await;
    let position = placed["position"].as_str().expect("a position");
    let message = assert_error(
        get(&fixture, &format!("/orders?after={position}")).await,
        StatusCode::GATEWAY_TIMEOUT,
        "stale",
    )
    .await;
    assert!(message.contains(position), "{message}");
    // Without `after`, the read model answers at once, as far as it got.
    let (status, body) = json_of(get(&fixture, "/orders").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["orders"], json!([]));
    store
        .release_lease(orders_service::read_model::NAME, other)
        .await
        .expect("released");
    fixture.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_model_survives_a_restart() {
    let fixture = Fixture::postgres(Config::default()).await;
    let store = fixture.store.clone().expect("a PostgreSQL store");
    let id = order_id();
    place(&fixture, &id, 900).await;
    let (_, paid) = json_of(
        post(
            &fixture,
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": 400, "reference": "r" }),
        )
        .await,
    )
    .await;
    let position = paid["position"].as_str().expect("a position").to_owned();
    let (status, _) = json_of(get(&fixture, &format!("/orders?after={position}")).await).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::timeout(PATIENCE, fixture.running.stop())
        .await
        .expect("stops in time")
        .expect("served");

    // A new process on the same database: the read model resumes from its stored
    // checkpoint, and applies nothing twice.
    let again = Fixture {
        running: serve(Backend::Postgres(store.clone()), Config::default()).await,
        store: Some(store),
    };
    let (_, paid) = json_of(
        post(
            &again,
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": 500, "reference": "r2" }),
        )
        .await,
    )
    .await;
    let position = paid["position"].as_str().expect("a position").to_owned();
    let (status, body) =
        json_of(get(&again, &format!("/orders?status=paid&after={position}")).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let orders = body["orders"].as_array().expect("a list");
    assert_eq!(orders.len(), 1, "{body}");
    assert_eq!(orders[0]["paid_cents"], 900, "each payment counted once");
    assert_eq!(orders[0]["version"], 3);
    again.finish().await;
}

/// The versions of the read model's migrations `store`'s schema recorded, in order.
async fn read_model_migrations(store: &PgEventStore) -> Vec<i32> {
    let recorded = store
        .table("es_read_model_migrations")
        .expect("a table name")
        .sql("SELECT version FROM {table} WHERE read_model = $1 ORDER BY version");
    sqlx::query_scalar(recorded)
        .bind(orders_service::read_model::NAME)
        .fetch_all(store.pool())
        .await
        .expect("the recorded migrations")
}

/// Lists `/orders` on `fixture` until `id` is in it, up to [`PATIENCE`]: whichever
/// instance holds the read model's lease writes the table they all read.
async fn until_listed(fixture: &Fixture, id: &str) -> Value {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let (status, body) = json_of(get(fixture, "/orders").await).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let listed = body["orders"]
                .as_array()
                .expect("a list")
                .iter()
                .any(|order| order["order_id"] == id);
            if listed {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the order reaches the read model in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_share_one_table() {
    // Three processes of the service on one schema, started at once: each migrates the
    // read model's table at start, and they take turns, so none fails on another's
    // half-made table and the table is made once. (Pools sized to fit the test's share.)
    let store = es_testkit::postgres::fresh_store_sized(6, |builder| builder).await;
    let second = es_testkit::postgres::second_store(&store, "orders-service-b", |b| b).await;
    let third = es_testkit::postgres::second_store(&store, "orders-service-c", |b| b).await;
    let (first, second, third) = tokio::join!(
        serve(Backend::Postgres(store.clone()), Config::default()),
        serve(Backend::Postgres(second), Config::default()),
        serve(Backend::Postgres(third), Config::default()),
    );
    let instances = [first, second, third].map(|running| Fixture {
        running,
        store: None,
    });
    assert_eq!(read_model_migrations(&store).await, vec![1], "made once");
    for instance in &instances {
        let (status, body) = json_of(get(instance, "/orders").await).await;
        assert_eq!(status, StatusCode::OK, "the table is there: {body}");
    }

    let id = order_id();
    place(&instances[1], &id, 300).await;
    for instance in &instances {
        until_listed(instance, &id).await;
    }
    for instance in instances {
        instance.finish().await;
    }
    es_testkit::postgres::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_made_before_it_was_declared_is_kept() {
    // A schema from a release that made the table by hand at start, recording nothing:
    // the first migration adopts the table, rows and all.
    let store = es_testkit::postgres::fresh_store().await;
    let table = store
        .table(orders_service::read_model::TABLE)
        .expect("a table name");
    sqlx::raw_sql(table.sql(include_str!("../../src/sql/create_orders_by_status.sql")))
        .execute(store.pool())
        .await
        .expect("the table as the earlier release made it");
    sqlx::query(table.sql(
        "INSERT INTO {table} (order_id, customer, status, total_cents, paid_cents, version)
         VALUES ('o-earlier', 'ada', 'paid', 100, 100, 2)",
    ))
    .execute(store.pool())
    .await
    .expect("a row of the earlier release");

    let fixture = Fixture {
        running: serve(Backend::Postgres(store.clone()), Config::default()).await,
        store: Some(store.clone()),
    };
    assert_eq!(read_model_migrations(&store).await, vec![1]);
    let body = until_listed(&fixture, "o-earlier").await;
    assert_eq!(body["orders"][0]["paid_cents"], 100, "{body}");
    fixture.finish().await;
}
