//! What personal (crypto-shredded) fields cost a `Repository::load` on PostgreSQL (issue
//! 14), each figure beside a baseline measured in the same run, in alternating rounds so
//! that every side shares the server's and the machine's drift (checkpoints, the other
//! core's load):
//!
//! - **baseline**: `Repository::load` of a 100-event aggregate through a plain
//!   `PgEventStore`, its events of a type without personal fields;
//! - `Protected<PgEventStore, PgKeyStore>` loading an aggregate of the same shape whose
//!   events carry two personal fields of about 30 bytes, key cache on (the default): the
//!   issue's target is at least 50% of the baseline's rate;
//! - the same `Protected` store loading the baseline's aggregate: the decorator's own cost;
//! - `Protected` with the key cache off (TTL 0): every load asks `PgKeyStore` for its keys.
//!
//! Ratios are medians of the per-round ratios to the baseline's figure of the same round.
//! Each `Protected` store's key store counts the lookups by key id it serves, printed per
//! load.
//!
//! Run with `cargo bench -p es-postgres --bench personal` (DATABASE_URL, or the local
//! server). Under `cargo test --benches` (no `--bench` argument) it makes one small round,
//! as a check that it still runs. It works in a schema of its own and drops it at the
//! end. Prints figures; it asserts nothing about time.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary: printing is its output, a failure aborts it"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use es_core::personal::{
    DataKey, Forgetting, KeyError, KeyId, KeyStore, LocalKeyEncryption, Protected, Subject,
};
use es_core::{
    Aggregate, AggregateType, DomainEvent, EventStore, ExpectedVersion, NewEvent, Repository,
    SnapshotStore, StreamId,
};
use es_postgres::PgKeyStore;

mod support;
use support::{Bench, median, rate};

/// A customer's details changed: two personal fields of about 30 bytes each.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum PersonalEvent {
    Updated {
        customer_id: String,
        #[personal(subject = customer_id, forgotten = "(forgotten)")]
        name: String,
        #[personal(subject = customer_id, forgotten = Default)]
        email: String,
        visits: u32,
    },
}

/// The same event without personal fields: the baseline's.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum PlainEvent {
    Updated {
        customer_id: String,
        name: String,
        email: String,
        visits: u32,
    },
}

/// A name of 30 bytes.
fn name(n: u64) -> String {
    format!("Ada Augusta King-Noel {n:>8}")
}

/// An email address of 30 bytes.
fn email(n: u64) -> String {
    format!("ada{n:0>8}@analytical.example")
}

/// The `n`th event of `customer`, with personal fields.
fn personal(customer: &str, n: u64) -> PersonalEvent {
    PersonalEvent::Updated {
        customer_id: customer.to_owned(),
        name: name(n),
        email: email(n),
        visits: u32::try_from(n % 1000).unwrap(),
    }
}

/// The `n`th event of `customer`, without personal fields.
fn plain(customer: &str, n: u64) -> PlainEvent {
    PlainEvent::Updated {
        customer_id: customer.to_owned(),
        name: name(n),
        email: email(n),
        visits: u32::try_from(n % 1000).unwrap(),
    }
}

/// No command: the bench only loads.
#[derive(Debug, Clone)]
enum NoCommand {}

/// The error no command returns.
#[derive(Debug, thiserror::Error)]
#[error("no command is decided here")]
struct Never;

/// What a load folds over the personal events: visits and the bytes of the names seen.
#[derive(Debug, Default, AggregateType)]
#[aggregate(name = "customer", command = NoCommand, event = PersonalEvent, error = Never)]
struct Customer {
    visits: u64,
    name_bytes: u64,
}

impl Aggregate for Customer {
    async fn handle(&self, command: NoCommand, _: &()) -> Result<Vec<PersonalEvent>, Never> {
        match command {}
    }

    fn apply(&mut self, event: &PersonalEvent) {
        let PersonalEvent::Updated { name, visits, .. } = event;
        self.visits += u64::from(*visits);
        self.name_bytes += name.len() as u64;
    }
}

/// The same fold over the plain events.
#[derive(Debug, Default, AggregateType)]
#[aggregate(name = "plain", command = NoCommand, event = PlainEvent, error = Never)]
struct PlainCustomer {
    visits: u64,
    name_bytes: u64,
}

impl Aggregate for PlainCustomer {
    async fn handle(&self, command: NoCommand, _: &()) -> Result<Vec<PlainEvent>, Never> {
        match command {}
    }

    fn apply(&mut self, event: &PlainEvent) {
        let PlainEvent::Updated { name, visits, .. } = event;
        self.visits += u64::from(*visits);
        self.name_bytes += name.len() as u64;
    }
}

/// `PgKeyStore`, counting the key lookups by id it serves (what a read that misses the
/// key cache asks): an atomic add beside a round trip.
#[derive(Debug, Clone)]
struct Counting {
    keys: PgKeyStore,
    lookups: Arc<AtomicU64>,
}

impl Counting {
    fn new(keys: PgKeyStore) -> Self {
        Self {
            keys,
            lookups: Arc::default(),
        }
    }

    fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }
}

impl KeyStore for Counting {
    async fn key_for(&self, subject: &Subject) -> Result<Option<(KeyId, DataKey)>, KeyError> {
        self.keys.key_for(subject).await
    }

    async fn key(&self, id: KeyId) -> Result<Option<DataKey>, KeyError> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        self.keys.key(id).await
    }

    async fn forget(&self, subject: &Subject, by: &str) -> Result<Forgetting, KeyError> {
        self.keys.forget(subject, by).await
    }

    async fn forgotten(&self, subject: &Subject) -> Result<Option<Forgetting>, KeyError> {
        self.keys.forgotten(subject).await
    }
}

/// How much work a run does: the full bench, or one small round under `cargo test`.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    rounds: usize,
    loads: u64,
}

const FULL: Sizes = Sizes {
    rounds: 15,
    loads: 40,
};

const SMOKE: Sizes = Sizes {
    rounds: 1,
    loads: 2,
};

/// Events in a loaded aggregate.
const EVENTS: u64 = 100;

/// Appends `EVENTS` events to the aggregate `id` of `A` in `store`.
async fn fill<A, S, E>(store: &S, id: &str, event: impl Fn(u64) -> E)
where
    A: AggregateType,
    S: EventStore,
    E: DomainEvent,
{
    let stream = StreamId::new(A::NAME, id).unwrap();
    let events = (0..EVENTS).map(|n| NewEvent::new(event(n))).collect();
    store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap();
}

/// `loads` loads of the aggregate `id`, in events per second.
async fn loads<A, S>(repository: &Repository<A, S>, id: &str, loads: u64) -> f64
where
    A: Aggregate + std::fmt::Debug,
    S: EventStore + SnapshotStore,
{
    let start = Instant::now();
    for _ in 0..loads {
        let loaded = repository.load(id).await.unwrap();
        assert_eq!(loaded.version.get(), EVENTS, "a whole aggregate is loaded");
        black_box(loaded.state);
    }
    rate(loads * EVENTS, start.elapsed())
}

/// The four loads, in turn in each round, and the table.
async fn load(bench: &mut Bench, sizes: Sizes) {
    let store = bench.store(false);
    let master = LocalKeyEncryption::from_base64(&LocalKeyEncryption::generate_secret()).unwrap();
    let keys = PgKeyStore::new(&store, master);
    let (cached_keys, uncached_keys) = (Counting::new(keys.clone()), Counting::new(keys));
    let protected = Protected::new(store.clone(), cached_keys.clone());
    let uncached =
        Protected::new(store.clone(), uncached_keys.clone()).with_key_cache_ttl(Duration::ZERO);
    // One aggregate of each type, in the same schema: the plain one read through both the
    // plain store and `Protected`, the personal one through `Protected` with and without
    // its key cache.
    fill::<PlainCustomer, _, _>(&store, "c1", |n| plain("c1", n)).await;
    fill::<Customer, _, _>(&protected, "c1", |n| personal("c1", n)).await;
    let plain_repo = Repository::<PlainCustomer, _>::new(store);
    let personal_repo = Repository::<Customer, _>::new(protected.clone());
    let decorated_repo = Repository::<PlainCustomer, _>::new(protected);
    let uncached_repo = Repository::<Customer, _>::new(uncached);

    // Each round loads through every store in turn; ratios are per round, to the plain
    // store's figure of the same round.
    let n = sizes.loads;
    let mut figures: [Vec<f64>; 4] = Default::default();
    let mut ratios: [Vec<f64>; 4] = Default::default();
    let mut lookups: [Vec<f64>; 2] = Default::default();
    for round in 0..=sizes.rounds {
        let plain = loads(&plain_repo, "c1", n).await;
        let before = cached_keys.lookups();
        let personal = loads(&personal_repo, "c1", n).await;
        let cached_lookups = cached_keys.lookups() - before;
        let decorated = loads(&decorated_repo, "c1", n).await;
        let before = uncached_keys.lookups();
        let uncached = loads(&uncached_repo, "c1", n).await;
        let uncached_lookups = uncached_keys.lookups() - before;
        if round == 0 {
            continue; // the warm-up round: connections, caches, the key cache
        }
        for (i, figure) in [plain, personal, decorated, uncached]
            .into_iter()
            .enumerate()
        {
            figures[i].push(figure);
            ratios[i].push(figure / plain);
        }
        lookups[0].push(cached_lookups as f64 / n as f64);
        lookups[1].push(uncached_lookups as f64 / n as f64);
    }
    let [plain, personal, decorated, uncached] = figures.map(median);
    let [_, personal_ratio, decorated_ratio, uncached_ratio] = ratios.map(median);
    let [cached_lookups, uncached_lookups] = lookups.map(median);
    println!(
        "\nRepository::load of a {EVENTS}-event aggregate, {n} loads a round, {} rounds \
         (median); ratios are to the plain PgEventStore's load",
        sizes.rounds
    );
    bench.record(
        "baseline: plain PgEventStore, no personal field",
        plain,
        "events/s",
        None,
    );
    bench.record(
        "Protected, 2 personal fields an event (target >= 50%)",
        personal,
        "events/s",
        Some(personal_ratio),
    );
    bench.record(
        "  key-store lookups a load (key cache on)",
        cached_lookups,
        "",
        None,
    );
    bench.record(
        "Protected, no personal field (the decorator's own cost)",
        decorated,
        "events/s",
        Some(decorated_ratio),
    );
    bench.record(
        "Protected, 2 personal fields, key cache off (TTL 0)",
        uncached,
        "events/s",
        Some(uncached_ratio),
    );
    bench.record(
        "  key-store lookups a load (key cache off)",
        uncached_lookups,
        "",
        None,
    );
    bench.record(
        "  one load, plain PgEventStore",
        1e6 * EVENTS as f64 / plain,
        "µs",
        None,
    );
    bench.record(
        "  one load, Protected with personal fields",
        1e6 * EVENTS as f64 / personal,
        "µs",
        None,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then one small
    // round, to check that the bench still runs.
    let full = std::env::args().skip(1).any(|a| a == "--bench");
    let sizes = if full { FULL } else { SMOKE };
    let title = if full {
        "es-postgres personal data (crypto-shredding)"
    } else {
        "es-postgres personal data (crypto-shredding), SMOKE RUN (no --bench): figures mean nothing,"
    };
    let mut bench = Bench::start(title).await;
    load(&mut bench, sizes).await;
    bench.finish().await;
}
