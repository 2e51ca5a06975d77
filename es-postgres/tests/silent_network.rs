//! A network that drops packets without a word (a partition, a dead load balancer) ends
//! no connection and lets no server deadline fire: only the client's reply deadline stops
//! the wait. Every call gives up, typed and transient, instead of hanging.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use es_core::{
    AppendError, EventFilter, EventStore as _, ExpectedVersion, NewEvent, Position, RawEvent,
    StoreErrorKind, StreamId,
};
use es_postgres::PgEventStore;
use futures_util::TryStreamExt as _;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to the test server that, while `silent` is set, swallows what either side
/// sends: nothing is refused, nothing arrives.
async fn proxy(silent: Arc<AtomicBool>) -> u16 {
    let options: PgConnectOptions = common::database_url().parse().unwrap();
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&target).await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pipe(client_read, server_write, Arc::clone(&silent)));
            tokio::spawn(pipe(server_read, client_write, Arc::clone(&silent)));
        }
    });
    port
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<AtomicBool>,
) {
    let mut buffer = vec![0; 16 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 {
            return;
        }
        if !silent.load(Ordering::SeqCst) && to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Through a network gone silent, appends and reads give up within the reply deadline,
/// as transient timeouts, and the store works again once the network is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_give_up_on_a_silent_network() {
    let owner = common::fresh_store().await;
    let silent = Arc::new(AtomicBool::new(false));
    let port = proxy(Arc::clone(&silent)).await;
    let options: PgConnectOptions = common::database_url().parse().unwrap();
    let url = format!(
        "postgres://{}@127.0.0.1:{port}/{}",
        options.get_username(),
        options.get_database().unwrap_or("postgres")
    );
    let store = PgEventStore::builder_for_url(&url)
        .unwrap()
        .schema(owner.schema().as_str())
        .unwrap()
        .reply_timeout(Duration::from_millis(500))
        .acquire_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let stream = StreamId::new("note", "1").unwrap();
    let noted = || vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))];
    store
        .append(&stream, ExpectedVersion::Any, noted())
        .await
        .unwrap();

    silent.store(true, Ordering::SeqCst);
    let patience = Duration::from_secs(20);
    let appended = tokio::time::timeout(
        patience,
        store.append(&stream, ExpectedVersion::Any, noted()),
    )
    .await
    .expect("the append gave up instead of hanging");
    match appended {
        Err(error @ AppendError::Store { .. }) => {
            assert!(error.is_transient(), "{error:?}");
            let AppendError::Store { source, .. } = &error else {
                unreachable!()
            };
            assert_eq!(source.kind(), StoreErrorKind::Timeout, "{error:?}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let read = tokio::time::timeout(
        patience,
        store
            .read_stream::<RawEvent>(&stream, es_core::Version::INITIAL)
            .try_collect::<Vec<_>>(),
    )
    .await
    .expect("the stream read gave up instead of hanging");
    assert!(read.is_err_and(|e| e.is_transient()));
    let logged = tokio::time::timeout(
        patience,
        store
            .read_all::<RawEvent>(Position::START, EventFilter::all())
            .try_collect::<Vec<_>>(),
    )
    .await
    .expect("the log read gave up instead of hanging");
    assert!(logged.is_err_and(|e| e.is_transient()));

    silent.store(false, Ordering::SeqCst);
    // Connections that lived through the silence may be out of step with the server and
    // are dropped as they fail; fresh ones work.
    let back = tokio::time::timeout(patience, async {
        loop {
            if store
                .append(&stream, ExpectedVersion::Any, noted())
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        back.is_ok(),
        "the store works again once the network is back"
    );
    common::drop_schema(owner).await;
}
