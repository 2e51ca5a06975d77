//! Runs the order scenario and prints each order's history, its rebuilt state, the rejected
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
