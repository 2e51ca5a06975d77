//! The store is a system of record through a server that goes away: backends terminated
//! under load, a fast restart (sessions ended with 57P01, clean shutdown) and an immediate
//! one (a crash, then recovery), on a private cluster of the test's own.
//!
//! Eight writers execute commands through `Repository` (each with a command id, retried
//! with the same id after an error), two live subscribers and a transactional projection
//! runner follow the log. Afterwards, from connections of its own, the test checks that
//! every acknowledged command's events are stored exactly once, no stream has a version
//! gap, each subscriber received every stored event exactly once in log order, the
//! projection applied each event once, and no session is left inside a transaction (see
//! `common/fault_load.rs`).
//!
//! It also measures, for each restart, the time from the server accepting connections
//! again to the first acknowledged command, the first event a subscriber received and the
//! runner handling again, and counts the command errors. Those figures are printed, never
//! asserted (a timed test must not judge speed):
//!
//! ```text
//! cargo test -p es-postgres --test restart -- --nocapture
//! ```
//!
//! Needs the PostgreSQL server binaries (`initdb`, `pg_ctl`); the shared server is never
//! touched.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/fault_load.rs"]
mod fault_load;

use std::time::{Duration, Instant};

use cluster::{Cluster, StopMode};
use fault_load::{Config, Load};

/// How long the server stays down at each restart.
const DOWNTIME: Duration = Duration::from_secs(1);

/// Terminates the load's backends twice, `gap` apart, after `gap`.
async fn kill_twice(load: &Load, gap: Duration) -> u64 {
    let mut killed = 0;
    for _ in 0..2 {
        tokio::time::sleep(gap).await;
        killed += load.kill_backends().await;
    }
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commands_survive_killed_backends_and_restarts() {
    let mut cluster = Cluster::start_new().await;
    let load = Load::start(
        &cluster.url(),
        Config {
            writers: 8,
            accounts: 4,
            subscribers: 2,
        },
    )
    .await;
    let started = Instant::now();
    let mut killed = kill_twice(&load, Duration::from_millis(700)).await;
    let mut recoveries = Vec::new();
    for mode in [StopMode::Fast, StopMode::Immediate] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = load.counts();
        let stopping = Instant::now();
        cluster.stop(mode).await;
        // Down for a moment, as a real restart is: clients meet refused connections.
        tokio::time::sleep(DOWNTIME).await;
        let back = cluster.start().await;
        let recovery = load.recovery(back).await;
        eprintln!(
            "restart ({mode:?}): server down and up again in {:.0?}; after it accepted \
             connections: {recovery}",
            back - stopping
        );
        recoveries.push((mode, before, recovery));
        killed += kill_twice(&load, Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ran = started.elapsed();
    let report = load.finish().await;
    eprintln!("restart: {ran:.1?} of load, {killed} backends terminated\n{report}");

    for (mode, _, recovery) in &recoveries {
        assert!(
            recovery.writers.is_some()
                && recovery.subscribers.is_some()
                && recovery.runner.is_some(),
            "after the {mode:?} restart the load did not recover: {recovery}"
        );
    }
    assert!(
        report.violations.is_empty(),
        "the store broke its guarantees:\n{report}\nserver log:\n{}",
        cluster.log_tail()
    );
}
