//! The server's share of a decision, without any Rust client: `pgbench` calls
//! `es_append_if` as the `Decider` does (one new event with two tags, the condition on its
//! course's tag, from the start of the log, with the pauses and wait limit a default store
//! sends), alternated with bare single-row INSERTs into `baseline` (the table and columns
//! of this benchmark's bare inserts; each call a new stream at version 1), on 1 and 8
//! connections.
//! What the ratio says: the part of the gap to the bare insert that the server's work
//! alone leaves, whatever the client does; the rest of the gap in the decisions' own
//! figures is the client's.
//!
//! Needs `pgbench` (PostgreSQL's client tools); without it the part says so and records
//! nothing.

use std::process::Command;
use std::time::Duration;

use super::support::{Bench, median, memo};

/// Rounds of each side, alternated.
const ROUNDS: usize = 5;

/// Seconds a round runs.
const SECONDS: &str = "3";

/// The pauses `es_append_if` is given while it waits for older transactions, drawn as the
/// store draws them (`store/conditional.rs`: 16, from 100 µs doubling up to 2 ms, jittered),
/// and the wait limit it sends with a default reply deadline (three quarters of 60 s).
fn wait_arguments() -> (String, &'static str) {
    let backoff = es_core::Backoff::new(Duration::from_micros(100), Duration::from_millis(2));
    let pauses: Vec<String> = (1..=16)
        .map(|retry| format!("{}", backoff.pause(retry).as_secs_f64()))
        .collect();
    (format!("ARRAY[{}]::float8[]", pauses.join(", ")), "45.0")
}

/// A pgbench script's SQL: `:client_id` and `n` (random) make each call's stream and tags
/// new. The colon of a tag is spelt `chr(58)`, to keep pgbench's variables out of the way.
fn scripts(schema: &str) -> (String, String) {
    let payload = serde_json::json!({ "memo": memo(1) }).to_string();
    let n = "\\set n random(1, 1000000000000000)\n";
    let suffix = "CAST(:client_id AS bigint) || '-' || CAST(:n AS bigint)";
    let bare = format!(
        "{n}INSERT INTO \"{schema}\".baseline (stream_id, version, event_id, event_type, \
             schema_version, payload, correlation_id, causation_id, metadata) \
         VALUES ('baseline-' || {suffix}, 1, gen_random_uuid(), 'Recorded', 1, '{payload}', \
                 gen_random_uuid(), gen_random_uuid(), '{{}}');\n"
    );
    let (pauses, wait_limit) = wait_arguments();
    let course = format!("'course' || chr(58) || {suffix}");
    let student = format!("'student' || chr(58) || {suffix}");
    let decision = format!(
        "{n}SELECT position, transaction_id, version, recorded_at \
         FROM \"{schema}\".es_append_if('seat-' || {suffix}, NULL, ARRAY[gen_random_uuid()], \
             ARRAY['StudentSubscribed'], ARRAY[1], ARRAY['{payload}'::jsonb], \
             ARRAY[gen_random_uuid()], ARRAY[gen_random_uuid()], ARRAY[NULL::text], \
             ARRAY['{{}}'::jsonb], ARRAY[NULL::text], ARRAY[{course} || E'\\x1f' || {student}], \
             jsonb_build_array(jsonb_build_object('types', ARRAY['StudentSubscribed'], \
                                                  'tags', ARRAY[{course}])), \
             ARRAY[{course}], '0'::xid8, 0, {pauses}, {wait_limit});\n"
    );
    (bare, decision)
}

/// Transactions per second of `script` on `clients` connections, or why not.
fn pgbench(url: &str, script: &std::path::Path, clients: u64) -> Result<f64, String> {
    let output = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-j", "2", "-T", SECONDS])
        .arg(format!("-c{clients}"))
        .arg("-f")
        .arg(script)
        .arg(url)
        .output()
        .map_err(|error| format!("cannot run pgbench: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .filter(|_| output.status.success())
        .ok_or_else(|| {
            format!(
                "pgbench failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })
}

/// Runs the part and records its figures.
pub(crate) fn server_side(bench: &mut Bench) {
    let url = es_testkit::postgres::database_url();
    let (bare, decision) = scripts(&bench.schema);
    let dir = std::env::temp_dir().join(format!("es-dcb-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (bare_path, decision_path) = (dir.join("bare.sql"), dir.join("decision.sql"));
    std::fs::write(&bare_path, bare).unwrap();
    std::fs::write(&decision_path, decision).unwrap();
    for clients in [1, 8] {
        let (mut base, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let measured = pgbench(&url, &bare_path, clients)
                .and_then(|b| pgbench(&url, &decision_path, clients).map(|o| (b, o)));
            match measured {
                Ok((b, o)) => {
                    base.push(b);
                    ours.push(o);
                    ratios.push(o / b);
                }
                Err(why) => {
                    println!("server side (pgbench) not measured: {why}");
                    let _ = std::fs::remove_dir_all(&dir);
                    return;
                }
            }
        }
        let plural = if clients == 1 { "" } else { "s" };
        bench.record(
            format!("pgbench: bare single-row INSERT, {clients} connection{plural}"),
            median(base),
            "rows/s",
            None,
        );
        bench.record(
            format!("pgbench: es_append_if as a decision, {clients} connection{plural}"),
            median(ours),
            "calls/s",
            Some(median(ratios)),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
