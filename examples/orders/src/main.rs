//! Runs the order scenario and prints each order's history, its rebuilt state, the rejected
//! commands and the read model.

#![allow(
    clippy::print_stdout,
    reason = "printing the report is this binary's job"
)]

use es_memory::MemoryEventStore;
use orders::scenario;

#[tokio::main]
async fn main() -> Result<(), scenario::Error> {
    println!("es-rs orders example on the in-memory store\n");
    let report = scenario::run(MemoryEventStore::new()).await?;
    print!("{}", report.text);
    Ok(())
}
