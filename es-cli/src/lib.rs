//! `es`, the admin CLI of es-rs, for an event store on PostgreSQL.
//!
//! ```text
//! es migrate [--check]                    create or upgrade the schema; --check: exit 3 if behind
//! es streams [--category C] [--limit N]   streams with event counts, last versions, archived flags
//! es show STREAM [--as-of VERSION|TIME]   a stream's history with metadata, as it was then
//! es tail [--category C] [--event-type T] [--from start|end|POSITION] [--limit N] [--timeout 30s]
//! es projections                          status, position, lag, last error, lease holder
//! es projections reset NAME [--checkpoint-only]
//! es projections rebuild NAME
//! es parked [NAME]                        parked events
//! es parked retry NAME [EVENT_ID]         hand them to the projection again
//! es horizon                              what holds the log back
//! es asyncapi                             the AsyncAPI document of the application's events
//! ```
//!
//! Every command connects with `DATABASE_URL` (or `--database-url`) to the schema `es` (or
//! `--schema`, or `ES_SCHEMA`). Read commands print tables for people and, with `--json`,
//! JSON with stable field names for scripts (the guide's CLI chapter lists them); colours
//! only on a terminal, and never with `NO_COLOR` set. A failure prints one line on standard
//! error, without the database password, and exits non-zero: 1, or 3 when the schema is not
//! migrated or behind ([`CliError::exit_code`]); a usage error exits with 2.
//!
//! # Embedding: the application's own `es`
//!
//! Rebuilding a projection, resetting it, retrying its parked events and printing the
//! AsyncAPI document run the application's code, which the stock `es` binary (an empty
//! [`App`]) does not have: it says so and how to register it. An application adds a small
//! binary of its own that registers its projections and its document and runs [`App`]:
//!
//! ```no_run
//! // src/bin/es.rs of the application
//! use es_cli::App;
//! # use es_core::{EventEnvelope, Projection, RawEvent};
//! # mod orders {
//! #     use super::*;
//! #     pub struct OpenOrders;
//! #     impl OpenOrders { pub fn new(_: &es_postgres::PgEventStore) -> Self { Self } }
//! #     impl Projection for OpenOrders {
//! #         type Event = RawEvent;
//! #         type Error = std::convert::Infallible;
//! #         fn name(&self) -> &str { "open-orders" }
//! #         async fn handle(&mut self, _: &EventEnvelope<RawEvent>) -> Result<(), Self::Error> { Ok(()) }
//! #     }
//! #     pub fn asyncapi() -> Result<es_asyncapi::Document, es_asyncapi::AsyncApiError> {
//! #         es_asyncapi::AsyncApi::new("Orders", "1.0.0").build()
//! #     }
//! # }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     App::new()
//!         .projection(orders::OpenOrders::new)
//!         .asyncapi_with(orders::asyncapi)
//!         .run()
//!         .await
//! }
//! ```
//!
//! `cargo run --bin es -- projections rebuild open-orders` then empties the read model and
//! replays the log through the application's projection, with es-core's runner (under the
//! projection's lease, so not while a runner of the application holds it), showing a
//! progress bar on a terminal. The crate's `embedded` example is such a binary.

mod app;
mod cli;
mod commands;
mod error;
mod fence;
mod output;
mod registry;
mod retry;

pub use app::App;
pub use error::{CliError, EXIT_BEHIND, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE};
