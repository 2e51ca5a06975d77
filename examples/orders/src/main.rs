//! With `NATS_URL` set, the log is then relayed to NATS JetStream (stream `ORDERS`).
//!
//! `asyncapi` (with `--json` for JSON instead of YAML) prints the AsyncAPI document of the
//! events it shares instead.
//!
//! Otherwise runs the order scenario and prints each order's history, its rebuilt state, the rejected
//! commands and the read model.
//!
//! On the in-memory store by default; on PostgreSQL when `DATABASE_URL` is set (the schema
//! `es` is created or migrated on start; each run uses new order and customer ids).
//!
//! The customers' names and addresses are stored encrypted ([`Protected`]), with keys kept
//! in memory, or on PostgreSQL in its key store, wrapped by the master key in
//! `ES_MASTER_KEY` (base64 of 32 bytes, as `LocalKeyEncryption::generate_secret` makes it).
//! Without `ES_MASTER_KEY`, a master key is generated for the run and lost with it: the
//! personal data it wrote is unreadable by any later run.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "printing the report, and warning about an ephemeral master key, is this binary's job"
)]

use es_core::personal::{KeyStore, LocalKeyEncryption, MemoryKeyStore, Protected};
use es_memory::MemoryEventStore;
use es_postgres::{PgEventStore, PgKeyStore};
use orders::scenario;

#[tokio::main]
async fn main() -> Result<(), scenario::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => {}
        ["asyncapi"] => {
            print!("{}", orders::channels::asyncapi()?.to_yaml()?);
            return Ok(());
        }
        ["asyncapi", "--json"] => {
            print!("{}", orders::channels::asyncapi()?.to_json_pretty());
            return Ok(());
        }
        _ => return Err(format!("usage: orders [asyncapi [--json]]; got {args:?}").into()),
    }
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let store = PgEventStore::connect(&url).await?;
            store.migrate().await?;
            println!(
                "es-rs orders example on PostgreSQL (schema `{}`)\n",
                store.schema()
            );
            let keys = PgKeyStore::new(&store, master_key()?);
            Box::pin(run(Protected::new(store, keys), false)).await
        }
        _ => {
            println!(
                "es-rs orders example on the in-memory store (set DATABASE_URL for PostgreSQL)\n"
            );
            let store = Protected::new(MemoryEventStore::new(), MemoryKeyStore::new());
            Box::pin(run(store, true)).await
        }
    }
}

/// The master key that wraps the customers' keys on PostgreSQL: `ES_MASTER_KEY`, or one made
/// for this run only (which is never printed).
fn master_key() -> Result<LocalKeyEncryption, scenario::Error> {
    match std::env::var("ES_MASTER_KEY") {
        Ok(set) if !set.is_empty() => Ok(LocalKeyEncryption::from_env("ES_MASTER_KEY")?),
        _ => {
            eprintln!(
                "warning: ES_MASTER_KEY is not set, so this run wraps its customers' keys with \
                 an ephemeral master key, lost when it ends: no later run can read the names \
                 and addresses it stores. Keep one in a secret store and set ES_MASTER_KEY to it \
                 (LocalKeyEncryption::generate_secret makes one).\n"
            );
            Ok(LocalKeyEncryption::from_base64(
                &LocalKeyEncryption::generate_secret(),
            )?)
        }
    }
}

/// The scenario, then, when `NATS_URL` is set, the log relayed to NATS JetStream on the
/// `EventSourceOrders` channel's address (`orders.{streamId}`).
///
/// The relay reads the store under `Protected` (its inner store), so it publishes the
/// events as stored, names and addresses sealed: the copies in JetStream become unreadable
/// with the customer's key, and a consumer opens them with `Protected::open`. Run on
/// `store` itself, it would publish them decrypted, beyond the reach of a forgetting.
async fn run<S, K>(store: Protected<S, K>, fresh_log: bool) -> Result<(), scenario::Error>
where
    S: es_core::Store,
    K: KeyStore,
{
    let report = scenario::run(store.clone()).await?;
    print!("{}", report.text);
    if let Ok(url) = std::env::var("NATS_URL") {
        let jetstream = async_nats::jetstream::new(async_nats::connect(&url).await?);
        if fresh_log && let Ok(stream) = jetstream.get_stream(orders::channels::STREAM).await {
            // The in-memory log starts empty on every run: what an earlier run relayed is
            // another log's, which the relay would refuse to continue.
            stream.purge().await?;
        }
        let relay = es_nats::Relay::builder(store.inner().clone(), jetstream)
            .stream(orders::channels::STREAM)
            .channel(&es_asyncapi::Channel::for_aggregate::<orders::Order>())
            .build()
            .await?;
        let relayed = es_core::ProjectionRunner::new(store.inner().clone(), relay)
            .catch_up()
            .await?;
        println!(
            "\nRelayed {relayed} events to NATS JetStream stream `{}` at {url}",
            orders::channels::STREAM
        );
    }
    Ok(())
}
