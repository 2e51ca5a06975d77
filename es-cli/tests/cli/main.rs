//! The `es` binary end to end, against the real PostgreSQL: every command's table and
//! `--json` output, `migrate --check`'s exit codes, a bounded `tail`, rebuild, reset and
//! parked retry through an application's own binary (the `embedded` example, which
//! registers a projection), and the error cases (bad URL, unreachable server, schema never
//! migrated, unknown stream, unknown or unregistered projection).
//!
//! Each test has a schema of its own (es-testkit), and every run of the binary takes the
//! connections it may open (two, and a listener for `tail`) from the test's budget.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod support;

mod errors;
mod migrate;
mod parked;
mod projections;
mod reads;
mod tail;
