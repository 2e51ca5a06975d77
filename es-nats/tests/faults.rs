//! The relay under faults, against real servers: a private NATS server (killed and
//! restarted, which drops every connection) and the PostgreSQL store, with writers running
//! throughout. The relay task is also aborted at random moments and restarted, sometimes
//! with its checkpoint set back to the start. Afterwards the JetStream stream must hold
//! every event of the log exactly once, in log order, and nothing else.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{ParcelEvent, assert_holds_exactly_the_log, jetstream_at, unique};
use es_core::{
    CheckpointStore as _, EventStore as _, ExpectedVersion, NewEvent, Position, ProjectionRunner,
    StreamId,
};
use es_nats::Relay;
use es_postgres::PgEventStore;

/// A NATS server of this test's own, with JetStream (unless asked otherwise), on a free
/// port.
struct PrivateNats {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    jetstream: bool,
}

impl PrivateNats {
    fn start() -> Self {
        Self::start_with(true)
    }

    fn start_with(jetstream: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(unique("es-nats-faults-"));
        let mut server = Self {
            child: None,
            port,
            dir,
            jetstream,
        };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned());
        let mut command = Command::new(&binary);
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.jetstream {
            command.arg("-js").arg("-sd").arg(&self.dir);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start `{binary}` ({error}): the fault tests run a NATS server of their own; install nats-server or set NATS_SERVER")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private NATS server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: every connection drops, nothing is flushed politely.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn build_relay_with(
    store: &PgEventStore,
    url: &str,
    stream: &str,
    duplicate_window: Duration,
) -> Relay<PgEventStore> {
    // While the server is down, building fails; keep trying, as a supervisor would.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = async {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(1))
                .connect(url)
                .await
                .ok()?;
            let context = async_nats::jetstream::ContextBuilder::new()
                .timeout(Duration::from_secs(2))
                .build(client);
            Relay::builder(store.clone(), context)
                .stream(stream)
                .route("parcel", format!("{stream}.parcels.{{streamId}}"))
                .max_in_flight(64)
                .duplicate_window(duplicate_window)
                .build()
                .await
                .ok()
        };
        if let Some(relay) = attempt.await {
            return relay;
        }
        assert!(
            Instant::now() < deadline,
            "the relay could not be built for 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_once_through_kills_server_restarts_and_stale_checkpoints() {
    // A duplicate window of 1 s: JetStream's own repeat-dropping covers little of the run,
    // so what keeps each event once is the relay resuming after what JetStream holds.
    let mut nats = PrivateNats::start();
    let store = es_testkit::postgres::fresh_store().await;
    let stream = unique("FAULTS_");

    // Four writers, each on streams of its own, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut appended = 0_u64;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = StreamId::new("parcel", &format!("w{writer}.{}", n % 7)).unwrap();
                    let events = (0..1 + n % 3)
                        .map(|i| {
                            NewEvent::new(ParcelEvent::Moved {
                                place: format!("hub {i}"),
                            })
                        })
                        .collect::<Vec<_>>();
                    appended += events.len() as u64;
                    store
                        .append(&id, ExpectedVersion::Any, events)
                        .await
                        .unwrap();
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                appended
            })
        })
        .collect();

    let (mut aborted, mut restarts, mut stale) = (0, 0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let relay = build_relay_with(&store, &nats.url(), &stream, Duration::from_secs(1)).await;
        let mut runner = ProjectionRunner::new(store.clone(), relay)
            .with_lease(Some(Duration::from_secs(5)))
            .with_batch_size(50)
            .with_commit_interval(Duration::from_millis(20));
        let task = tokio::spawn(async move { runner.run().await });
        tokio::time::sleep(Duration::from_millis(fastrand::u64(150..700))).await;
        match fastrand::u8(0..3) {
            0 => {
                // The relay process dies mid-batch.
                task.abort();
                aborted += 1;
            }
            1 => {
                // The broker dies and comes back; the relay rides it out on its own, then
                // is stopped too so the loop can go on.
                nats.kill();
                tokio::time::sleep(Duration::from_millis(fastrand::u64(50..400))).await;
                nats.restart();
                tokio::time::sleep(Duration::from_millis(300)).await;
                task.abort();
                restarts += 1;
            }
            _ => {
                // Restarted with a checkpoint from long ago.
                task.abort();
                let _ = task.await;
                store
                    .save_checkpoint("nats-relay", Position::START)
                    .await
                    .unwrap();
                stale += 1;
                continue;
            }
        }
        let _ = task.await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut appended = 0;
    for writer in writers {
        appended += writer.await.unwrap();
    }

    // A last relay takes what is left.
    let relay = build_relay_with(&store, &nats.url(), &stream, Duration::from_secs(1)).await;
    let mut runner = ProjectionRunner::new(store.clone(), relay);
    runner.catch_up().await.unwrap();
    let jetstream = jetstream_at(&nats.url()).await;
    let held = assert_holds_exactly_the_log(&store, &jetstream, &stream, &["parcel"]).await;
    eprintln!(
        "{appended} events appended and held once each in order ({held}); relay aborted \
         {aborted}x, NATS killed and restarted {restarts}x, checkpoint set back {stale}x"
    );
    assert_eq!(held as u64, appended);
    assert!(
        aborted + restarts + stale >= 6,
        "too few faults injected to mean anything"
    );

    es_testkit::postgres::drop_schema(store).await;
}

#[tokio::test]
async fn a_server_without_jetstream_is_named() {
    let nats = PrivateNats::start_with(false);
    let client = async_nats::connect(nats.url()).await.unwrap();
    let error = Relay::builder(
        es_memory::MemoryEventStore::new(),
        async_nats::jetstream::new(client),
    )
    .route("parcel", "parcels.{streamId}")
    .build()
    .await
    .unwrap_err();
    assert!(
        matches!(error, es_nats::RelayError::JetStreamUnavailable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("nats-server -js"), "{error}");
}

#[tokio::test]
async fn the_relay_goes_on_after_the_broker_restarts_from_a_quiet_spell() {
    // JetStream forgets the last message id when it restarts more than a duplicate window
    // after the last message; it keeps the sequence. A relay that chained by id alone would
    // be refused for ever.
    let mut nats = PrivateNats::start();
    let store = es_testkit::postgres::fresh_store().await;
    let stream = unique("QUIET_");
    for n in 0..3 {
        let id = StreamId::new("parcel", &format!("q{n}")).unwrap();
        store
            .append(
                &id,
                ExpectedVersion::NoStream,
                vec![NewEvent::new(ParcelEvent::Delivered)],
            )
            .await
            .unwrap();
    }
    let window = Duration::from_secs(1);
    let relay = build_relay_with(&store, &nats.url(), &stream, window).await;
    assert_eq!(
        relay
            .runner(Duration::from_secs(5))
            .catch_up()
            .await
            .unwrap(),
        3
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    nats.kill();
    nats.restart();
    let id = StreamId::new("parcel", "after").unwrap();
    store
        .append(
            &id,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(ParcelEvent::Delivered)],
        )
        .await
        .unwrap();
    let relay = build_relay_with(&store, &nats.url(), &stream, window).await;
    let relayed = tokio::time::timeout(
        Duration::from_secs(30),
        relay.runner(Duration::from_secs(5)).catch_up(),
    )
    .await
    .expect("the relay does not go round in circles")
    .unwrap();
    assert_eq!(relayed, 1);
    let jetstream = jetstream_at(&nats.url()).await;
    assert_eq!(
        assert_holds_exactly_the_log(&store, &jetstream, &stream, &["parcel"]).await,
        4
    );
    es_testkit::postgres::drop_schema(store).await;
}
