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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// A TCP proxy to the test server. While `silent` is set, it swallows what either side
/// sends on the connections opened before `silent_before` was raised past them: nothing is
/// refused, nothing arrives (a black hole for those, as when a server is gone without a
/// word while its replacement takes new connections).
async fn proxy(
    silent: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    silent_below: Arc<AtomicU64>,
) -> u16 {
    let options: PgConnectOptions = common::database_url().parse().unwrap();
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&target).await else {
                continue;
            };
            let born = generation.fetch_add(1, Ordering::SeqCst);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let mute = Mute {
                silent: Arc::clone(&silent),
                below: Arc::clone(&silent_below),
                born,
            };
            tokio::spawn(pipe(client_read, server_write, mute.clone()));
            tokio::spawn(pipe(server_read, client_write, mute));
        }
    });
    port
}

/// Whether a connection's traffic is swallowed now.
#[derive(Clone)]
struct Mute {
    silent: Arc<AtomicBool>,
    below: Arc<AtomicU64>,
    born: u64,
}

impl Mute {
    fn now(&self) -> bool {
        self.silent.load(Ordering::SeqCst) || self.born < self.below.load(Ordering::SeqCst)
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mute: Mute,
) {
    let mut buffer = vec![0; 16 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 {
            return;
        }
        if !mute.now() && to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Through a network gone silent, appends and reads give up within the reply deadline,
/// as transient timeouts, and once new connections get through again (while the old ones
/// stay silent) the store works again at once: it holds no pool slot for a call it gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_give_up_on_a_silent_network() {
    let owner = common::fresh_store().await;
    let silent = Arc::new(AtomicBool::new(false));
    let generation = Arc::new(AtomicU64::new(0));
    let silent_below = Arc::new(AtomicU64::new(0));
    let port = proxy(
        Arc::clone(&silent),
        Arc::clone(&generation),
        Arc::clone(&silent_below),
    )
    .await;
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
        .reply_timeout(Some(Duration::from_millis(500)))
        .max_connections(2)
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

    // The old connections stay a black hole, new ones get through (a failover): the store
    // closed the connections whose calls it gave up on, instead of waiting to pool them
    // again, so it can open new ones at once.
    silent_below.store(generation.load(Ordering::SeqCst), Ordering::SeqCst);
    silent.store(false, Ordering::SeqCst);
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
