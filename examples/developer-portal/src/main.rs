//! With `NATS_URL` set, the log is then relayed to NATS JetStream, for the `survey-service`
//! binary.
//!
//! `asyncapi` (with `--json` for JSON instead of YAML) prints the AsyncAPI document of the
//! events it shares instead.
//!
//! Otherwise runs the developer portal scenario and prints each application's history, the
//! product decisions (offers and withdrawals, and adds the catalog refused), the rejected
//! commands, the catalog read model and the surveys the flows added and sent.
//!
//! On the in-memory store by default; on PostgreSQL when `DATABASE_URL` is set (the schema
//! `es` is created or migrated on start; each run uses new application ids, and the flows
//! resume from their checkpoints there).

#![allow(
    clippy::print_stdout,
    reason = "printing the report is this binary's job"
)]

use developer_portal::scenario;
use es_memory::MemoryEventStore;
use es_postgres::PgEventStore;

#[tokio::main]
async fn main() -> Result<(), scenario::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => {}
        ["asyncapi"] => {
            print!("{}", developer_portal::channels::asyncapi()?.to_yaml()?);
            return Ok(());
        }
        ["asyncapi", "--json"] => {
            print!(
                "{}",
                developer_portal::channels::asyncapi()?.to_json_pretty()
            );
            return Ok(());
        }
        _ => {
            return Err(
                format!("usage: developer-portal [asyncapi [--json]]; got {args:?}").into(),
            );
        }
    }
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let store = PgEventStore::connect(&url).await?;
            store.migrate().await?;
            println!(
                "es-rs developer portal example on PostgreSQL (schema `{}`)\n",
                store.schema()
            );
            run(store, false).await
        }
        _ => {
            println!(
                "es-rs developer portal example on the in-memory store (set DATABASE_URL for PostgreSQL)\n"
            );
            run(MemoryEventStore::new(), true).await
        }
    }
}

/// The scenario, then, when `NATS_URL` is set, the log relayed to NATS JetStream, where
/// the `survey-service` binary picks up the product removals.
async fn run<S: es_core::Store>(store: S, fresh_log: bool) -> Result<(), scenario::Error> {
    let report = scenario::run(store.clone()).await?;
    print!("{}", report.text);
    if let Ok(url) = std::env::var("NATS_URL") {
        let jetstream = async_nats::jetstream::new(async_nats::connect(&url).await?);
        let topology = developer_portal::shared::Topology::default();
        if fresh_log && let Ok(stream) = jetstream.get_stream(&topology.stream).await {
            // The in-memory log starts empty on every run: what an earlier run relayed is
            // another log's, which the relay would refuse to continue.
            stream.purge().await?;
        }
        let relayed = developer_portal::shared::relay(&store, &jetstream, &topology).await?;
        println!(
            "\nRelayed {relayed} events to NATS JetStream stream `{}` at {url}; \
             `cargo run -p developer-portal --bin survey-service` consumes the product removals.",
            topology.stream
        );
    }
    Ok(())
}
