//! The service end to end, over real HTTP on a loopback port, on the in-memory store and
//! on PostgreSQL (a schema of its own per test, from `es_testkit::postgres`; the tests fail
//! without a server). One test binary, by area: [`support`] holds the fixture and the
//! helpers every area uses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step is a failed test"
)]

mod commands;
mod live;
mod outages;
mod read_model;
mod support;
mod surface;
