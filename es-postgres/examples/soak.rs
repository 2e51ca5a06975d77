//! A bounded soak run: the store as a system of record under sustained faults.
//!
//! ```text
//! cargo run -p es-postgres --example soak --release -- --seconds 60
//! ```
//!
//! On a private PostgreSQL cluster of its own (the server binaries must be installed; the
//! shared server is never touched), 16 writers execute commands through `Repository`, 4
//! live subscribers and a transactional projection runner follow the log, the load's
//! backends are terminated every 200 ms, and the cluster is restarted with `fast` at a
//! third of the run and `immediate` (a crash) at two thirds. At the end it checks that no
//! acknowledged event was lost or stored twice, no stream has a version gap, and neither a
//! subscriber nor the runner skipped or repeated an event (see
//! `tests/common/fault_load.rs`), and prints what it measured: commands acknowledged,
//! command errors by kind, events delivered, and the recovery times after each restart.
//!
//! Exits with status 1 on any violation (and 2 on bad arguments).

#![allow(
    clippy::print_stdout,
    reason = "a command-line tool: the report is its output"
)]

#[path = "../tests/common/cluster.rs"]
mod cluster;
#[path = "../tests/common/fault_load.rs"]
mod fault_load;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use cluster::{Cluster, StopMode};
use fault_load::{Config, Load, Recovery};

/// How often the load's backends are terminated.
const KILL_EVERY: Duration = Duration::from_millis(200);
/// How long the server stays down at each restart.
const DOWNTIME: Duration = Duration::from_secs(1);
/// How often progress is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

const USAGE: &str = "usage: soak [--seconds N]   (default 60, at least 6)";

/// The run's length, from `--seconds N` or `--seconds=N`.
fn parse_args() -> Result<Duration, String> {
    let mut seconds = 60_u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--seconds" => args.next().ok_or("--seconds needs a value")?,
            "-h" | "--help" => return Err(String::new()),
            other => match other.strip_prefix("--seconds=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unknown argument `{other}`")),
            },
        };
        seconds = value
            .parse()
            .map_err(|e| format!("--seconds `{value}`: {e}"))?;
    }
    if seconds < 6 {
        return Err("--seconds must be at least 6 (two restarts need room)".into());
    }
    Ok(Duration::from_secs(seconds))
}

#[tokio::main]
async fn main() -> ExitCode {
    let length = match parse_args() {
        Ok(length) => length,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("soak: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut cluster = Cluster::start_new().await;
    eprintln!(
        "soak: private cluster on port {}, {length:?} of load",
        cluster.port()
    );
    let load = Load::start(
        &cluster.url(),
        Config {
            writers: 16,
            accounts: 8,
            subscribers: 4,
        },
    )
    .await;
    let started = Instant::now();
    let mut restarts = vec![
        (length / 3, StopMode::Fast),
        (length * 2 / 3, StopMode::Immediate),
    ];
    restarts.reverse();
    let mut recoveries: Vec<(StopMode, Duration, Recovery)> = Vec::new();
    let mut killed = 0;
    let mut kills = 0;
    let mut next_progress = PROGRESS_EVERY;
    while started.elapsed() < length {
        tokio::time::sleep(KILL_EVERY).await;
        if restarts
            .last()
            .is_some_and(|(at, _)| started.elapsed() >= *at)
            && let Some((_, mode)) = restarts.pop()
        {
            let stopping = Instant::now();
            cluster.stop(mode).await;
            tokio::time::sleep(DOWNTIME).await;
            let back = cluster.start().await;
            // No kills while it recovers: they would be measured instead of the restart.
            let recovery = load.recovery(back).await;
            eprintln!(
                "soak: restart ({mode:?}) at {:.1?}, down {:.0?}; after it accepted connections: {recovery}",
                stopping - started,
                back - stopping
            );
            recoveries.push((mode, back - stopping, recovery));
            continue;
        }
        killed += load.kill_backends().await;
        kills += 1;
        if started.elapsed() >= next_progress {
            let (acked, delivered, handled) = load.counts();
            eprintln!(
                "soak: {:.0?}: {acked} commands acknowledged, {delivered} deliveries, \
                 {handled} events handled by the runner, {killed} backends terminated",
                started.elapsed()
            );
            next_progress += PROGRESS_EVERY;
        }
    }
    let ran = started.elapsed();
    eprintln!("soak: stopping the load and checking");
    let report = load.finish().await;

    println!("soak: {ran:.1?} of load, {kills} kill rounds, {killed} backends terminated");
    println!("{report}");
    let mut unrecovered = 0;
    for (mode, down, recovery) in &recoveries {
        println!("restart ({mode:?}), down {down:.0?}: {recovery}");
        if recovery.writers.is_none() || recovery.subscribers.is_none() || recovery.runner.is_none()
        {
            unrecovered += 1;
        }
    }
    if report.violations.is_empty() && unrecovered == 0 {
        println!("soak: no violation");
        ExitCode::SUCCESS
    } else {
        println!(
            "soak: FAILED ({} violations, {unrecovered} restarts without recovery)\nserver log:\n{}",
            report.violations.len(),
            cluster.log_tail()
        );
        ExitCode::FAILURE
    }
}
