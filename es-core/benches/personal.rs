//! What crypto-shredding costs (issue 14): each figure of an event with two personal fields
//! beside the same-shaped event without any, measured in the same run in alternating
//! rounds, so that both sides share the machine's drift (the other core's load, frequency
//! changes). Four parts:
//!
//! - **encode**: `DomainEvent::encode` plus `encrypt_fields` (keys already fetched) against
//!   `encode` alone;
//! - **decode**: `decrypt_fields` plus `DomainEvent::decode` against `decode` alone, and what
//!   that is per personal field (the target: under 2 µs per field);
//! - **load**: `Repository::load` of a 100-event aggregate through
//!   `Protected<MemoryEventStore, MemoryKeyStore>` against the same aggregate without
//!   personal fields on a plain `MemoryEventStore` (the target: at least 50% of its rate),
//!   and against a strict one (which decodes every event from JSON, as a database store
//!   does); also the plain aggregate through `Protected` (the decorator's own cost) and
//!   the personal one with the key cache off;
//! - **forget**: `Protected::forget` on the memory key store, and the loads after it.
//!
//! Run with `cargo bench -p es-core --bench personal` (`-- load` runs only the parts whose
//! name holds `load`). Under `cargo test` (no `--bench` argument) it makes one small round
//! of each part, as a check that it still runs. Prints figures; it asserts nothing about
//! time.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary: printing is its output, a failure aborts it"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use es_core::personal::{
    DataKey, Forgetting, FoundKeys, KeyError, KeyId, KeyStore, MemoryKeyStore, Protected, Subject,
    SubjectKeys, decrypt_fields, encrypt_fields, key_ids_of,
};
use es_core::{
    Aggregate, AggregateType, DomainEvent, EventStore, ExpectedVersion, NewEvent, Repository,
    SnapshotStore, StreamId,
};
use es_memory::MemoryEventStore;
use serde_json::Value;

/// What a reader sees in place of a forgotten name.
const FORGOTTEN_NAME: &str = "(forgotten)";

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

/// The same event without personal fields: the baseline.
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

fn personal(customer: &str, n: u64) -> PersonalEvent {
    PersonalEvent::Updated {
        customer_id: customer.to_owned(),
        name: name(n),
        email: email(n),
        visits: u32::try_from(n % 1000).unwrap(),
    }
}

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

#[derive(Debug, thiserror::Error)]
#[error("no command is decided here")]
struct Never;

/// What a load folds: visits, the bytes of the names seen, and how many were forgotten.
#[derive(Debug, Default, AggregateType)]
#[aggregate(name = "customer", command = NoCommand, event = PersonalEvent, error = Never)]
struct Customer {
    visits: u64,
    name_bytes: u64,
    forgotten: u64,
}

impl Aggregate for Customer {
    async fn handle(&self, command: NoCommand, _: &()) -> Result<Vec<PersonalEvent>, Never> {
        match command {}
    }

    fn apply(&mut self, event: &PersonalEvent) {
        let PersonalEvent::Updated { name, visits, .. } = event;
        self.visits += u64::from(*visits);
        self.name_bytes += name.len() as u64;
        self.forgotten += u64::from(name == FORGOTTEN_NAME);
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

/// The memory key store, counting the key lookups by id (what a read that misses the
/// cache asks): an atomic add beside a mutex and a map.
#[derive(Debug, Clone, Default)]
struct Counting {
    keys: MemoryKeyStore,
    lookups: Arc<AtomicU64>,
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
    codec_events: u64,
    loads: u64,
    forgets: u64,
}

const FULL: Sizes = Sizes {
    rounds: 15,
    codec_events: 20_000,
    loads: 100,
    forgets: 61,
};

const SMOKE: Sizes = Sizes {
    rounds: 1,
    codec_events: 100,
    loads: 2,
    forgets: 2,
};

/// Events in a loaded aggregate.
const EVENTS: u64 = 100;

/// Customers the codec events are spread over (each a subject with its key).
const CUSTOMERS: u64 = 100;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn micros_per(count: u64, elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e6 / count as f64
}

/// The printed table.
struct Table;

impl Table {
    fn header(title: &str) {
        println!("\n{title}");
        println!(
            "{:<66} {:>10} {:<9} {:>6}",
            "measure", "figure", "unit", "ratio"
        );
    }

    /// One figure; `ratio` is to the baseline of its part.
    fn row(what: &str, figure: f64, unit: &str, ratio: Option<f64>) {
        let figure = if figure.abs() < 100.0 {
            format!("{figure:.2}")
        } else {
            format!("{figure:.0}")
        };
        let ratio = ratio
            .map(|r| format!("{:>5.0}%", 100.0 * r))
            .unwrap_or_default();
        println!("{what:<66} {figure:>10} {unit:<9} {ratio}");
    }
}

/// Medians of each side and of the per-round ratios `ours / baseline`, in rounds that
/// alternate the two.
fn alternate(
    rounds: usize,
    mut baseline: impl FnMut() -> f64,
    mut ours: impl FnMut() -> f64,
) -> (f64, f64, f64) {
    let (mut base, mut mine, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let b = baseline();
        let o = ours();
        base.push(b);
        mine.push(o);
        ratios.push(o / b);
    }
    (median(base), median(mine), median(ratios))
}

/// The keys of the codec events' customers, fetched once, as an append would hold them,
/// and the same keys by id, as a read would.
async fn codec_keys() -> (SubjectKeys, FoundKeys) {
    let keys = MemoryKeyStore::new();
    let (mut by_subject, mut by_id) = (HashMap::new(), HashMap::new());
    for c in 0..CUSTOMERS {
        let subject = Subject::new(format!("customer-{c}")).unwrap();
        let (id, key) = keys.key_for(&subject).await.unwrap().unwrap();
        by_id.insert(id, Some(key.clone()));
        by_subject.insert(subject, Some((id, key)));
    }
    (by_subject, by_id)
}

fn customer(n: u64) -> String {
    format!("customer-{}", n % CUSTOMERS)
}

/// `encode` of each event, in µs per event.
fn encode_plain(events: &[PlainEvent]) -> f64 {
    let start = Instant::now();
    for event in events {
        black_box(event.encode().unwrap());
    }
    micros_per(events.len() as u64, start.elapsed())
}

/// `encode` and `encrypt_fields` of each event, in µs per event.
fn encode_sealed(events: &[PersonalEvent], keys: &SubjectKeys) -> f64 {
    let start = Instant::now();
    for event in events {
        let mut payload = event.encode().unwrap();
        let event_type = event.event_type();
        let fields = PersonalEvent::personal_fields(event_type);
        encrypt_fields(event_type, fields, &mut payload, keys).unwrap();
        black_box(payload);
    }
    micros_per(events.len() as u64, start.elapsed())
}

fn encode(sizes: Sizes, keys: &SubjectKeys) {
    let n = sizes.codec_events;
    let plains: Vec<_> = (0..n).map(|i| plain(&customer(i), i)).collect();
    let personals: Vec<_> = (0..n).map(|i| personal(&customer(i), i)).collect();
    // Warm the allocator and the caches.
    encode_plain(&plains);
    encode_sealed(&personals, keys);
    let (base, ours, ratio) = alternate(
        sizes.rounds,
        || encode_plain(&plains),
        || encode_sealed(&personals, keys),
    );
    Table::header(&format!(
        "encode: {n} events a round, {} rounds (median)",
        sizes.rounds
    ));
    Table::row(
        "baseline: encode, no personal field",
        base,
        "µs/event",
        None,
    );
    Table::row(
        "encode + encrypt_fields, 2 personal fields (keys fetched)",
        ours,
        "µs/event",
        Some(ratio),
    );
    Table::row("  cost per personal field", (ours - base) / 2.0, "µs", None);
}

/// `decode` of each payload, in µs per event; the payloads are copied before the clock
/// starts.
fn decode_plain(payloads: &[Value]) -> f64 {
    let payloads = payloads.to_vec();
    let count = payloads.len() as u64;
    let start = Instant::now();
    for payload in payloads {
        black_box(PlainEvent::decode("Updated", 1, payload).unwrap());
    }
    micros_per(count, start.elapsed())
}

/// `decrypt_fields` and `decode` of each sealed payload (after `key_ids_of`, the scan
/// `Protected` makes to know which keys to fetch, if `scan`), in µs per event.
fn decode_sealed(payloads: &[Value], keys: &FoundKeys, scan: bool) -> f64 {
    let payloads = payloads.to_vec();
    let count = payloads.len() as u64;
    let fields = PersonalEvent::personal_fields("Updated");
    let start = Instant::now();
    for mut payload in payloads {
        if scan {
            black_box(key_ids_of("Updated", &payload).unwrap());
        }
        decrypt_fields("Updated", fields, &mut payload, keys).unwrap();
        black_box(PersonalEvent::decode("Updated", 1, payload).unwrap());
    }
    micros_per(count, start.elapsed())
}

fn decode(sizes: Sizes, subject_keys: &SubjectKeys, keys: &FoundKeys) {
    let n = sizes.codec_events;
    let plains: Vec<_> = (0..n)
        .map(|i| plain(&customer(i), i).encode().unwrap())
        .collect();
    let fields = PersonalEvent::personal_fields("Updated");
    let sealed: Vec<_> = (0..n)
        .map(|i| {
            let mut payload = personal(&customer(i), i).encode().unwrap();
            encrypt_fields("Updated", fields, &mut payload, subject_keys).unwrap();
            payload
        })
        .collect();
    decode_plain(&plains);
    decode_sealed(&sealed, keys, true);
    let (base, ours, ratio) = alternate(
        sizes.rounds,
        || decode_plain(&plains),
        || decode_sealed(&sealed, keys, false),
    );
    let (_, scanned, scanned_ratio) = alternate(
        sizes.rounds,
        || decode_plain(&plains),
        || decode_sealed(&sealed, keys, true),
    );
    Table::header(&format!(
        "decode: {n} events a round, {} rounds (median)",
        sizes.rounds
    ));
    Table::row(
        "baseline: decode, no personal field",
        base,
        "µs/event",
        None,
    );
    Table::row(
        "decrypt_fields + decode, 2 personal fields (keys fetched)",
        ours,
        "µs/event",
        Some(ratio),
    );
    Table::row(
        "  cost per personal field (target < 2 µs)",
        (ours - base) / 2.0,
        "µs",
        None,
    );
    Table::row(
        "key_ids_of + decrypt_fields + decode (what Protected runs)",
        scanned,
        "µs/event",
        Some(scanned_ratio),
    );
    Table::row(
        "  cost per personal field",
        (scanned - base) / 2.0,
        "µs",
        None,
    );
}

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
    (loads * EVENTS) as f64 / start.elapsed().as_secs_f64()
}

async fn load(sizes: Sizes) {
    let plain_store = MemoryEventStore::new();
    let strict_store = MemoryEventStore::strict();
    let protected = Protected::new(MemoryEventStore::new(), MemoryKeyStore::new());
    let uncached = Protected::new(MemoryEventStore::new(), MemoryKeyStore::new())
        .with_key_cache_ttl(Duration::ZERO);
    fill::<PlainCustomer, _, _>(&plain_store, "c1", |n| plain("c1", n)).await;
    fill::<PlainCustomer, _, _>(&strict_store, "c1", |n| plain("c1", n)).await;
    fill::<Customer, _, _>(&protected, "c1", |n| personal("c1", n)).await;
    fill::<PlainCustomer, _, _>(&protected, "c1", |n| plain("c1", n)).await;
    fill::<Customer, _, _>(&uncached, "c1", |n| personal("c1", n)).await;
    let plain_repo = Repository::<PlainCustomer, _>::new(plain_store);
    let strict_repo = Repository::<PlainCustomer, _>::new(strict_store);
    let personal_repo = Repository::<Customer, _>::new(protected.clone());
    let decorated_repo = Repository::<PlainCustomer, _>::new(protected);
    let uncached_repo = Repository::<Customer, _>::new(uncached);

    // Each round loads through every store in turn; ratios are per round, to the plain
    // store's figure (and the strict store's) of the same round.
    let n = sizes.loads;
    let mut figures: [Vec<f64>; 5] = Default::default();
    let mut to_plain: [Vec<f64>; 5] = Default::default();
    let mut to_strict: [Vec<f64>; 5] = Default::default();
    for round in 0..=sizes.rounds {
        let round_figures = [
            loads(&plain_repo, "c1", n).await,
            loads(&strict_repo, "c1", n).await,
            loads(&personal_repo, "c1", n).await,
            loads(&decorated_repo, "c1", n).await,
            loads(&uncached_repo, "c1", n).await,
        ];
        if round == 0 {
            continue; // the warm-up round: caches and allocator
        }
        for (i, figure) in round_figures.iter().enumerate() {
            figures[i].push(*figure);
            to_plain[i].push(figure / round_figures[0]);
            to_strict[i].push(figure / round_figures[1]);
        }
    }
    let [plain, strict, personal, decorated, uncached] = figures.map(median);
    let [
        _,
        strict_to_plain,
        personal_to_plain,
        decorated_to_plain,
        uncached_to_plain,
    ] = to_plain.map(median);
    let [
        _,
        _,
        personal_to_strict,
        decorated_to_strict,
        uncached_to_strict,
    ] = to_strict.map(median);
    Table::header(&format!(
        "load: Repository::load of a {EVENTS}-event aggregate, {n} loads a round, {} rounds (median); ratios to the plain store",
        sizes.rounds
    ));
    Table::row(
        "baseline: plain MemoryEventStore (typed events, cloned)",
        plain,
        "events/s",
        None,
    );
    Table::row(
        "strict MemoryEventStore (decodes each event, as a database)",
        strict,
        "events/s",
        Some(strict_to_plain),
    );
    Table::row(
        "Protected, 2 personal fields an event (target >= 50%)",
        personal,
        "events/s",
        Some(personal_to_plain),
    );
    Table::row(
        "  ratio to the strict store",
        personal_to_strict * 100.0,
        "%",
        None,
    );
    Table::row(
        "Protected, no personal field (the decorator's own cost)",
        decorated,
        "events/s",
        Some(decorated_to_plain),
    );
    Table::row(
        "  ratio to the strict store",
        decorated_to_strict * 100.0,
        "%",
        None,
    );
    Table::row(
        "Protected, 2 personal fields, key cache off (TTL 0)",
        uncached,
        "events/s",
        Some(uncached_to_plain),
    );
    Table::row(
        "  ratio to the strict store",
        uncached_to_strict * 100.0,
        "%",
        None,
    );
    Table::row(
        "  one load, Protected with personal fields",
        1e6 * EVENTS as f64 / personal,
        "µs",
        None,
    );
}

async fn timed<T>(work: impl Future<Output = T>) -> (T, f64) {
    let start = Instant::now();
    let out = work.await;
    (out, start.elapsed().as_secs_f64() * 1e6)
}

async fn forget(sizes: Sizes) {
    let keys = Counting::default();
    let lookups = Arc::clone(&keys.lookups);
    let store = Protected::new(MemoryEventStore::new(), keys);
    fill::<Customer, _, _>(&store, "live", |n| personal("live", n)).await;
    for i in 0..sizes.forgets {
        let id = format!("f{i}");
        fill::<Customer, _, _>(&store, &id, |n| personal(&id, n)).await;
    }
    let repository = Repository::<Customer, _>::new(store.clone());
    repository.load("live").await.unwrap();

    let mut samples: [Vec<f64>; 5] = Default::default();
    let mut first_lookups = Vec::new();
    let mut again_lookups = Vec::new();
    for i in 0..sizes.forgets {
        let id = format!("f{i}");
        let subject = Subject::new(id.clone()).unwrap();
        // The warm load of a live aggregate, right before: the baseline of the loads.
        let (_, warm) = timed(repository.load("live")).await;
        let (forgetting, forget) = timed(store.forget(&subject, "bench")).await;
        forgetting.unwrap();
        let before = lookups.load(Ordering::Relaxed);
        let (loaded, first) = timed(repository.load(&id)).await;
        assert_eq!(
            loaded.unwrap().state.forgotten,
            EVENTS,
            "every name forgotten"
        );
        let between = lookups.load(Ordering::Relaxed);
        let (_, again) = timed(repository.load(&id)).await;
        let after = lookups.load(Ordering::Relaxed);
        // The live aggregate's first load after the cache was emptied.
        let (loaded, live) = timed(repository.load("live")).await;
        assert_eq!(
            loaded.unwrap().state.forgotten,
            0,
            "the live one is readable"
        );
        if i == 0 {
            continue; // the warm-up sample
        }
        for (list, value) in samples.iter_mut().zip([warm, forget, first, again, live]) {
            list.push(value);
        }
        first_lookups.push((between - before) as f64);
        again_lookups.push((after - between) as f64);
    }
    let [warm, forget, first, again, live] = samples.map(median);
    Table::header(&format!(
        "forget: {} subjects, each with a {EVENTS}-event aggregate (median); ratios to a warm load",
        sizes.forgets - 1
    ));
    Table::row("Protected::forget, memory key store", forget, "µs", None);
    Table::row(
        "baseline: warm load of a live aggregate (keys cached)",
        warm,
        "µs",
        None,
    );
    Table::row(
        "first load of the forgotten aggregate after forget",
        first,
        "µs",
        Some(first / warm),
    );
    Table::row(
        "  key-store lookups in that load",
        median(first_lookups),
        "",
        None,
    );
    Table::row(
        "second load of the forgotten aggregate",
        again,
        "µs",
        Some(again / warm),
    );
    Table::row(
        "  key-store lookups in that load",
        median(again_lookups),
        "",
        None,
    );
    Table::row(
        "first load of a live aggregate after forget (cache emptied)",
        live,
        "µs",
        Some(live / warm),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then one small
    // round of each part, to check that the bench still runs.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes = if args.iter().any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    // `cargo bench -p es-core --bench personal -- <word>` runs only the parts whose name
    // holds it.
    let only = args.iter().find(|a| !a.starts_with('-')).cloned();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "es-core personal data (crypto-shredding), one thread, {cores} cores visible{}; ratios are to the baseline of the same run",
        if sizes.rounds == 1 {
            ", SMOKE RUN (no --bench): figures mean nothing"
        } else {
            ""
        }
    );
    let started = Instant::now();
    let (subject_keys, found_keys) = runtime.block_on(codec_keys());
    if wanted("encode") {
        encode(sizes, &subject_keys);
    }
    if wanted("decode") {
        decode(sizes, &subject_keys, &found_keys);
    }
    if wanted("load") {
        runtime.block_on(load(sizes));
    }
    if wanted("forget") {
        runtime.block_on(forget(sizes));
    }
    println!("\n{:.1} s in all", started.elapsed().as_secs_f64());
}
