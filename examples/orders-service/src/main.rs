//! `orders-service`: the orders example over HTTP.
//!
//! Serves on 127.0.0.1:3000 (`--addr`, or `ORDERS_ADDR`), on the in-memory store, or on
//! PostgreSQL when `DATABASE_URL` is set (its schema migrated on start). Stops gracefully
//! on Ctrl-C or SIGTERM. `--trust-traceparent` puts a command request's `traceparent` in its
//! events (only behind upstreams that set or sanitise it).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use es_postgres::PgEventStore;
use orders_service::{Backend, Config, Service};
use tokio::net::TcpListener;

/// The orders example of es-rs as an HTTP service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where to listen.
    #[arg(long, env = "ORDERS_ADDR", default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// The PostgreSQL server to store events in; the in-memory store if not given.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Put a command request's `traceparent` header in its events' metadata. Only behind
    /// upstreams that set or sanitise the header: otherwise any client picks the trace
    /// context the events carry.
    #[arg(long)]
    trust_traceparent: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let backend = match &args.database_url {
        // The store's errors describe the URL without its password.
        Some(url) => Backend::Postgres(PgEventStore::connect(url).await?),
        None => Backend::memory(),
    };
    let name = backend.name();
    let config = Config {
        trust_traceparent: args.trust_traceparent,
        ..Config::default()
    };
    let service = Service::start(backend, config).await?;
    let listener = TcpListener::bind(args.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, store = name, "serving orders");
    service.serve(listener, shutdown_signal()).await?;
    Ok(())
}

/// Ctrl-C, or SIGTERM on Unix (what a container runtime sends).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
