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
    let report = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let store = PgEventStore::connect(&url).await?;
            store.migrate().await?;
            println!(
                "es-rs orders example on PostgreSQL (schema `{}`)\n",
                store.schema()
            );
            scenario::run(store).await?
        }
        _ => {
            println!(
                "es-rs orders example on the in-memory store (set DATABASE_URL for PostgreSQL)\n"
            );
            scenario::run(MemoryEventStore::new()).await?
        }
    };
    print!("{}", report.text);
    Ok(())
}
