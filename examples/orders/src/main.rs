//! With `NATS_URL` set, the log is then relayed to NATS JetStream (stream `ORDERS`).
//!
//! `asyncapi` (with `--json` for JSON instead of YAML) prints the AsyncAPI document of the
//! events it shares instead.
//!
//! Otherwise runs the order scenario and prints each order's history, its rebuilt state, the rejected
//! commands and the read model.
//!
//! On the in-memory store by default; on PostgreSQL when `DATABASE_URL` is set (the schema
//! `es` is created or migrated on start; each run uses new order ids).

#![allow(
    clippy::print_stdout,
    reason = "printing the report is this binary's job"
)]

use es_memory::MemoryEventStore;
use es_postgres::PgEventStore;
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
            run(store, false).await
        }
        _ => {
            println!(
                "es-rs orders example on the in-memory store (set DATABASE_URL for PostgreSQL)\n"
            );
            run(MemoryEventStore::new(), true).await
        }
    }
}

/// The scenario, then, when `NATS_URL` is set, the log relayed to NATS JetStream on the
/// `EventSourceOrders` channel's address (`orders.{streamId}`).
async fn run<S: es_core::Store>(store: S, fresh_log: bool) -> Result<(), scenario::Error> {
    let report = scenario::run(store.clone()).await?;
    print!("{}", report.text);
    if let Ok(url) = std::env::var("NATS_URL") {
        let jetstream = async_nats::jetstream::new(async_nats::connect(&url).await?);
        if fresh_log && let Ok(stream) = jetstream.get_stream(orders::channels::STREAM).await {
            // The in-memory log starts empty on every run: what an earlier run relayed is
            // another log's, which the relay would refuse to continue.
            stream.purge().await?;
        }
        let relay = es_nats::Relay::builder(store.clone(), jetstream)
            .stream(orders::channels::STREAM)
            .channel(&es_asyncapi::Channel::for_aggregate::<orders::Order>())
            .build()
            .await?;
        let relayed = es_core::ProjectionRunner::new(store, relay)
            .catch_up()
            .await?;
        println!(
            "\nRelayed {relayed} events to NATS JetStream stream `{}` at {url}",
            orders::channels::STREAM
        );
    }
    Ok(())
}
