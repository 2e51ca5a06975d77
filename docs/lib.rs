//! The es-rs guide's Rust snippets, compiled and run as doc tests.
//!
//! Each chapter of the guide (`docs/src/*.md`, built into a book by mdBook) and the
//! repository's README are the docs of a module here, so `cargo test -p es-guide` (and
//! `cargo test --workspace`) compiles every Rust snippet in them and runs those that are
//! not marked `no_run`. A snippet the guide shows is then one that works with the code as
//! it is. `tests/links.rs` checks the links between the pages. `cargo doc` skips the crate
//! (`doc = false`): the book, `mdbook build docs`, is the guide's rendering.

/// The repository's README.
#[doc = include_str!("../README.md")]
pub mod readme {}

/// The es-postgres crate's README (the crates' other READMEs hold no Rust snippet).
#[doc = include_str!("../es-postgres/README.md")]
pub mod es_postgres_readme {}

/// Introduction.
#[doc = include_str!("src/introduction.md")]
pub mod introduction {}

/// Quick start.
#[doc = include_str!("src/quick-start.md")]
pub mod quick_start {}

/// Concepts.
#[doc = include_str!("src/concepts.md")]
pub mod concepts {}

/// The derives.
#[doc = include_str!("src/derives.md")]
pub mod derives {}

/// Testing with given/when/then.
#[doc = include_str!("src/testing.md")]
pub mod testing {}

/// Running on PostgreSQL.
#[doc = include_str!("src/postgres.md")]
pub mod postgres {}

/// Projections and rebuilds.
#[doc = include_str!("src/projections.md")]
pub mod projections {}

/// Rules across aggregates: tagged decisions.
#[doc = include_str!("src/decisions.md")]
pub mod decisions {}

/// Personal data that can be forgotten.
#[doc = include_str!("src/personal-data.md")]
pub mod personal_data {}

/// Living with history.
#[doc = include_str!("src/living-with-history.md")]
pub mod living_with_history {}

/// Sharing events with other services.
#[doc = include_str!("src/sharing-events.md")]
pub mod sharing_events {}

/// Operating with the `es` CLI.
#[doc = include_str!("src/cli.md")]
pub mod cli {}

/// The HTTP service.
#[doc = include_str!("src/http-service.md")]
pub mod http_service {}

/// Telemetry.
#[doc = include_str!("src/telemetry.md")]
pub mod telemetry {}

/// What es-rs guarantees.
#[doc = include_str!("src/guarantees.md")]
pub mod guarantees {}

/// es-rs beside cqrs-es, disintegrate and eventcore.
#[doc = include_str!("src/comparison.md")]
pub mod comparison {}
