//! The store unreachable or refusing for a moment: commands and reads answer 503, not 500.

use std::net::SocketAddr;
use std::time::Duration;

use es_core::{Backoff, RetryPolicy};
use es_postgres::PgEventStore;
use orders_service::{Backend, Config};
use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

use crate::support::{Fixture, LOOPBACK, assert_error, get, json_of, order_id, place, post, serve};

/// A TCP proxy to `target` on a loopback port; aborting its tasks cuts every connection
/// and refuses new ones.
async fn proxy(target: SocketAddr) -> (SocketAddr, JoinSet<()>) {
    let listener = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_unavailable_is_503() {
    let store = es_testkit::postgres::fresh_store().await;
    let options = es_testkit::postgres::connect_options("orders-service-503");
    let target: SocketAddr = format!("{}:{}", options.get_host(), options.get_port())
        .parse()
        .expect("the test server is at an IP address");
    let (addr, mut proxied) = proxy(target).await;
    let _budget = es_testkit::postgres::hold_connections(5).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options.host("127.0.0.1").port(addr.port()));
    let cut_off = PgEventStore::builder(pool)
        .schema(store.schema().as_str())
        .expect("the schema")
        .reply_timeout(Some(Duration::from_secs(2)))
        .build();
    let config = Config {
        retry: RetryPolicy::default().with_store_retries(0, Backoff::none()),
        ..Config::default()
    };
    let fixture = Fixture {
        running: serve(Backend::Postgres(cut_off), config).await,
        store: None,
    };
    let id = order_id();
    place(&fixture, &id, 100).await;

    proxied.shutdown().await;
    assert_error(
        get(&fixture, &format!("/orders/{id}")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    assert_error(
        post(
            &fixture,
            &format!("/orders/{id}/pay"),
            json!({ "amount_cents": 100, "reference": "r" }),
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    fixture.finish().await;
    es_testkit::postgres::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::disallowed_methods,
    reason = "the test holds a transaction open on purpose, to hold its lock"
)]
async fn read_model_lock_timeout_is_503() {
    // The server refuses the read model's query with a lock timeout (55P03): a deadline,
    // worth trying again, so 503 as for a lost connection, not 500.
    let store = es_testkit::postgres::fresh_store().await;
    let options = es_testkit::postgres::connect_options("orders-service-lock-timeout")
        .options([("lock_timeout", "200ms")]);
    let pool = es_testkit::postgres::connect_with(options, 4).await;
    let impatient = PgEventStore::builder(pool)
        .schema(store.schema().as_str())
        .expect("the schema")
        .build();
    let fixture = Fixture {
        running: serve(Backend::Postgres(impatient), Config::default()).await,
        store: Some(store.clone()),
    };
    let (status, body) = json_of(get(&fixture, "/orders").await).await;
    assert_eq!(status, StatusCode::OK, "the table is there: {body}");

    let table = store
        .table(orders_service::read_model::TABLE)
        .expect("a table name");
    let mut locked = store.pool().begin().await.expect("a transaction");
    sqlx::query(table.sql("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut *locked)
        .await
        .expect("the table locked");
    let message = assert_error(
        get(&fixture, "/orders").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    assert!(message.contains("try again"), "{message}");
    locked.rollback().await.expect("the lock released");
    let (status, body) = json_of(get(&fixture, "/orders").await).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "answers again once the lock is gone: {body}"
    );
    fixture.finish().await;
}
