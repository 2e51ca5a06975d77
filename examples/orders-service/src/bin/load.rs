//! `load`: a bounded load test of the orders service, beside the store's own figures.
//!
//! Starts the service in this process on a loopback port (or targets `--url`, which must
//! be a loopback address), runs `--clients` concurrent clients that each place, pay,
//! prepare and ship orders over HTTP until `--requests` requests are sent or
//! `--seconds` have passed, and prints requests/s and p50/p99 latency. Then it runs the
//! same commands, as many and as concurrently, straight through the
//! [`Repository`](es_core::Repository) on the same store, without HTTP: the baseline the
//! service's figures are a ratio of.
//!
//! ```text
//! cargo run --release -p orders-service --bin load                      # in memory
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p orders-service --bin load -- --store postgres
//! ```
//!
//! On PostgreSQL it works in a schema of its own (`orders_load_<time>`), dropped at the end.
//! It prints figures; nothing checks them.

#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: its report is its output"
)]

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use es_core::{CommandContext, RetryPolicy};
use es_postgres::PgEventStore;
use orders::{LineItem, OrderCommand};
use orders_service::backend::Orders;
use orders_service::{Backend, Config, Service};
use serde_json::json;
use tokio::task::JoinSet;

/// A bounded load test of the orders service.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// The store the in-process service (and the baseline) runs on; `postgres` needs
    /// `DATABASE_URL`.
    #[arg(long, value_enum, default_value_t = StoreKind::Memory)]
    store: StoreKind,
    /// A service already running at this loopback URL instead of one in this process.
    #[arg(long)]
    url: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Requests in all, at most.
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// Seconds of sending, at most (for each of the two runs).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The PostgreSQL server, for `--store postgres`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Memory,
    Postgres,
}

/// What one run measured.
#[derive(Debug, Default)]
struct Figures {
    latencies: Vec<Duration>,
    failures: usize,
    elapsed: Duration,
}

impl Figures {
    fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        self.failures += other.failures;
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn print(&self, label: &str) {
        println!(
            "{label:<28} {:>7} ops  {:>9.0} ops/s  p50 {:>8.3} ms  p99 {:>8.3} ms  {} failed",
            self.latencies.len(),
            self.per_second(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.failures,
        );
    }
}

/// Hands out the run's budget: a request may start while fewer than `requests` have and
/// the deadline has not passed.
struct Budget {
    issued: AtomicUsize,
    requests: usize,
    deadline: Instant,
}

impl Budget {
    fn take(&self) -> bool {
        Instant::now() < self.deadline
            && self.issued.fetch_add(1, Ordering::Relaxed) < self.requests
    }
}

/// The `step`th command of an order's life (place, pay, prepare, ship), as an HTTP path
/// and body and as the command itself.
fn step(step: usize) -> (&'static str, serde_json::Value, OrderCommand) {
    match step % 4 {
        0 => (
            "place",
            json!({ "customer": "load", "items": [{ "sku": "kettle", "quantity": 2, "unit_price_cents": 1_250 }] }),
            OrderCommand::Place {
                customer_id: String::new(),
                customer: "load".to_owned(),
                address: String::new(),
                items: vec![LineItem::new("kettle", 2, 1_250)],
            },
        ),
        1 => (
            "pay",
            json!({ "amount_cents": 2_500, "reference": "load" }),
            OrderCommand::ReceivePayment {
                amount_cents: 2_500,
                reference: "load".to_owned(),
            },
        ),
        2 => (
            "prepare",
            json!({ "warehouse": "north" }),
            OrderCommand::StartPreparing {
                warehouse: "north".to_owned(),
            },
        ),
        _ => (
            "ship",
            json!({ "carrier": "dhl", "tracking_number": "T" }),
            OrderCommand::Ship {
                carrier: "dhl".to_owned(),
                tracking_number: "T".to_owned(),
            },
        ),
    }
}

/// `clients` clients sending commands over HTTP to `base` within `budget`.
async fn over_http(base: &str, clients: usize, budget: Arc<Budget>) -> Figures {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for c in 0..clients {
        let (client, budget, base) = (client.clone(), budget.clone(), base.to_owned());
        tasks.spawn(async move {
            let mut figures = Figures::default();
            let mut n = 0;
            let mut id = String::new();
            while budget.take() {
                // A new order every four commands: its place, pay, prepare and ship.
                if n % 4 == 0 {
                    id = format!("load-{}-{c}", uuid::Uuid::now_v7().simple());
                }
                let (path, body, _) = step(n);
                let start = Instant::now();
                let sent = client
                    .post(format!("{base}/orders/{id}/{path}"))
                    .json(&body)
                    .send()
                    .await;
                figures.latencies.push(start.elapsed());
                if !sent.is_ok_and(|response| response.status().is_success()) {
                    figures.failures += 1;
                }
                n += 1;
            }
            figures
        });
    }
    collect(tasks, started).await
}

/// The same commands straight through the repository, as concurrently.
async fn direct(orders: &Orders, clients: usize, budget: Arc<Budget>) -> Figures {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for c in 0..clients {
        let (orders, budget) = (orders.clone(), budget.clone());
        tasks.spawn(async move {
            let mut figures = Figures::default();
            let mut n = 0;
            let mut id = String::new();
            while budget.take() {
                // A new order every four commands: its place, pay, prepare and ship.
                if n % 4 == 0 {
                    id = format!("base-{}-{c}", uuid::Uuid::now_v7().simple());
                }
                let (_, _, command) = step(n);
                let start = Instant::now();
                let done = orders.execute(&id, command, CommandContext::new()).await;
                figures.latencies.push(start.elapsed());
                figures.failures += usize::from(done.is_err());
                n += 1;
            }
            figures
        });
    }
    collect(tasks, started).await
}

async fn collect(mut tasks: JoinSet<Figures>, started: Instant) -> Figures {
    let mut all = Figures::default();
    while let Some(figures) = tasks.join_next().await {
        match figures {
            Ok(figures) => all.merge(figures),
            Err(error) => eprintln!("a client failed: {error}"),
        }
    }
    all.elapsed = started.elapsed();
    all
}

/// Refuses any `--url` but a loopback one: this tool sends load to this machine only.
fn loopback_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`--url`: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if !loopback || parsed.scheme() != "http" {
        return Err(format!(
            "`--url` must be an http:// URL on a loopback address (127.0.0.0/8, [::1], localhost), not {}",
            parsed.host_str().unwrap_or("(no host)")
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let target = args.url.as_deref().map(loopback_url).transpose()?;
    let backend = match args.store {
        StoreKind::Memory => Backend::memory(),
        StoreKind::Postgres => {
            let url = args
                .database_url
                .as_deref()
                .ok_or("`--store postgres` needs DATABASE_URL")?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let schema = format!("orders_load_{now}");
            let store = PgEventStore::builder_for_url(url)?
                .schema(&schema)?
                .max_connections(u32::try_from(args.clients + 4).unwrap_or(u32::MAX))
                .connect()
                .await?;
            Backend::Postgres(store)
        }
    };
    let seconds = Duration::from_secs(args.seconds);
    let budget = |requests| {
        Arc::new(Budget {
            issued: AtomicUsize::new(0),
            requests,
            deadline: Instant::now() + seconds,
        })
    };

    if let Backend::Postgres(store) = &backend {
        store.migrate().await?;
    }
    let orders = Orders::new(&backend, RetryPolicy::default());
    let http = match &target {
        Some(url) => over_http(url, args.clients, budget(args.requests)).await,
        None => {
            let running = Service::start(backend.clone(), Config::default())
                .await?
                .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await?;
            let figures = over_http(&running.url(), args.clients, budget(args.requests)).await;
            // The baseline runs alone: the service (and its read model's runner) stopped.
            running.stop().await?;
            figures
        }
    };
    let baseline = direct(&orders, args.clients, budget(http.latencies.len())).await;

    println!(
        "orders-service load: {} clients, store {}, service {}",
        args.clients,
        backend.name(),
        target.as_deref().unwrap_or("in process")
    );
    http.print("HTTP commands");
    baseline.print("Repository (no HTTP)");
    println!(
        "HTTP / Repository: {:.2} of the throughput, p50 x{:.2}",
        http.per_second() / baseline.per_second().max(f64::EPSILON),
        http.percentile(0.5).as_secs_f64()
            / baseline.percentile(0.5).as_secs_f64().max(f64::EPSILON),
    );

    if let Backend::Postgres(store) = &backend {
        // The load test's own schema (`orders_load_<time>`), dropped whole. es-postgres completes `{schema}` with
        // the schema quoted in a read model table's statements; one of them is this
        // drop, so no SQL text is built here.
        let drop = store
            .table(orders_service::read_model::TABLE)?
            .sql("DROP SCHEMA IF EXISTS {schema} CASCADE");
        sqlx::query(drop).execute(store.pool()).await?;
    }
    Ok(())
}
