//! The survey service: a second service beside the portal. It receives the portal's
//! `ApiProductRemoved` events from NATS JetStream (relayed there by `developer-portal` when
//! `NATS_URL` is set) and adds a survey for each, in a store of its own.
//!
//! `NATS_URL=127.0.0.1:4222 cargo run -p developer-portal --bin survey-service`, after
//! `NATS_URL=127.0.0.1:4222 cargo run -p developer-portal`. Its store is PostgreSQL when
//! `SURVEY_DATABASE_URL` is set (schema `surveys`), otherwise memory, in which case each run
//! starts afresh and surveys every removal the stream holds.

#![allow(
    clippy::print_stdout,
    reason = "printing the report is this binary's job"
)]

use developer_portal::scenario::Error;
use developer_portal::shared;
use es_memory::MemoryEventStore;
use es_postgres::PgEventStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let nats = std::env::var("NATS_URL")
        .map_err(|_| "set NATS_URL to the NATS server the portal relays to")?;
    let jetstream = async_nats::jetstream::new(async_nats::connect(&nats).await?);
    let topology = shared::Topology::default();
    let handled = match std::env::var("SURVEY_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let store = PgEventStore::builder_for_url(&url)?
                .schema("surveys")?
                .connect()
                .await?;
            store.migrate().await?;
            shared::survey_service(&store, &jetstream, &topology).await?
        }
        _ => shared::survey_service(&MemoryEventStore::new(), &jetstream, &topology).await?,
    };
    println!(
        "survey service: {handled} product removals received from JetStream `{}`, a survey added for each",
        topology.stream
    );
    Ok(())
}
