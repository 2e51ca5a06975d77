//! `es`, the admin CLI of es-rs, with no projections or AsyncAPI document registered: an
//! application that wants `es projections rebuild` and `es asyncapi` runs
//! [`es_cli::App`] from a binary of its own.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    es_cli::App::new().run().await
}
