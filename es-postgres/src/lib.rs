//! The PostgreSQL event store of es-rs.
//!
//! [`PgEventStore`] implements the whole `es-core` store contract, the five traits
//! [`EventStore`], [`SnapshotStore`], [`CheckpointStore`], [`DeadLetterStore`] and
//! [`LeaseStore`] (together, [`Store`]), on a stock PostgreSQL 14 or newer, with the same
//! semantics as the in-memory store (one conformance suite checks both):
//!
//! - an append is one `INSERT ... SELECT FROM UNNEST(...)` statement for the whole batch:
//!   atomic, one round trip, and checked against the expected version by the unique
//!   (stream, version) constraint plus a guard for versions the stream has not reached;
//!   a lost race is [`AppendError::Conflict`](es_core::AppendError::Conflict), never a raw
//!   SQL error; re-appending stored event ids is an idempotent no-op;
//! - reads page through rows (never a whole stream or log in memory);
//! - the global log is **gapless**: readers order it by (writing transaction, sequence
//!   number) and read only below the oldest transaction of this database still running,
//!   so an event whose transaction commits after a later-numbered one is still delivered,
//!   once, and a checkpoint never passes an event that may yet appear.
//!   [`PgEventStore::horizon`] shows what holds the log back;
//! - every append is checked against `es_core::limits` before any I/O, and whatever a
//!   caller cancels, an append that returned `Ok` is committed;
//! - deadlines on every wait ([`PgPoolSettings`]), typed transient errors, and
//!   least-privilege grants for the application role
//!   ([`PgEventStore::grant_application_role`], [`PgEventStore::verify`]);
//! - subscriptions are woken directly by appends in the same process and by
//!   `LISTEN`/`NOTIFY` across processes, poll as a fallback, and survive lost connections,
//!   resuming where they were.
//! - tags are stored in a `text[]` column with a partial GIN index, which
//!   [`EventStore::read_query`] reads for queries whose every item has a tag; the
//!   conditional append ([`EventStore::append_if`]) is one statement that inserts, then
//!   checks the condition with a fresh snapshot and waits for older transactions, race-free
//!   under every isolation level and against late commits (see the crate README);
//! - read models in the same database ([`PgProjection`], [`PgInlineProjection`]) declare
//!   their tables as versioned [`PgMigration`]s, which the runner (or
//!   [`PgEventStore::migrate`], for inline ones) applies once in the store's schema and
//!   refuses if edited, and name them through [`PgTable`], quoted: no DDL to run by hand,
//!   no SQL text to build;
//! - personal data that can be forgotten: [`PgKeyStore`] keeps each data subject's key,
//!   wrapped by the application's master key, and forgets a subject for good (its key
//!   deleted, the forgetting recorded, race-free against a concurrent first use).
//!
//! ```no_run
//! use es_core::{EventFilter, EventStore, ExpectedVersion, NewEvent, Position, RawEvent, StreamId};
//! use es_postgres::PgEventStore;
//! use futures_util::StreamExt;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgEventStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
//! store.migrate().await?;
//!
//! let stream = StreamId::new("order", "42")?;
//! let placed = RawEvent::new("OrderNew", 1, serde_json::json!({ "customer": "ada" }));
//! store.append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new(placed)]).await?;
//!
//! let mut live = Box::pin(store.subscribe::<RawEvent>(Position::START, EventFilter::all()));
//! while let Some(envelope) = live.next().await {
//!     let envelope = envelope?;
//!     println!("{} v{}: {}", envelope.stream_id, envelope.version, envelope.event.event_type);
//! #   break;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Schema
//!
//! [`PgEventStore::migrate`] creates, in the configured schema (default `es`):
//!
//! | Table            | Columns                                                                 |
//! |------------------|-------------------------------------------------------------------------|
//! | `events`         | `position` bigint identity, `transaction_id` xid8 (the writer's `pg_current_xact_id()`), `stream_id` text, `version` bigint, `event_id` uuid, `event_type` text, `schema_version` integer, `payload` jsonb, `correlation_id` uuid, `causation_id` uuid, `actor` text, `metadata` jsonb (the free-form entries), `traceparent` text, `tags` text[] (NULL for none, a partial GIN index for queries), `recorded_at` timestamptz. Primary key (`transaction_id`, `position`), the global log's order; unique (`stream_id`, `version`); unique `event_id`. |
//! | `snapshots`      | `stream_id` (primary key), `version`, `schema_version`, `state` jsonb, `taken_at` |
//! | `checkpoints`    | `name` (primary key), `position_major`, `position_minor`, `updated_at`  |
//! | `es_migrations`  | the applied migration versions and checksums, apart from the application's own |
//! | `subject_keys`   | `subject` text (primary key), `key_id` uuid (unique), `wrapped` bytea (the data key wrapped by the master key), `created_at`: the keys of [`PgKeyStore`] |
//! | `forgotten_subjects` | `subject` text (primary key), `forgotten_by` text, `forgotten_at`: who had a subject forgotten, and when (no personal data) |
//! | `forgotten_keys`   | `key_id` uuid (primary key), `forgotten_at`: the keys forgetting destroyed, to tell them from keys never held |
//! | `es_read_model_migrations` | `read_model`, `version`, `name`, `checksum`, `applied_at`: the read models' migrations ([`PgMigration`]), made when the first is applied |
//!
//! Positions are `(transaction id, sequence)`: compare and store them, do not compute with
//! them, and resume only after positions a read of the log delivered (see
//! [`EventStore`]).
//!
//! # Moving data between clusters
//!
//! The log is ordered by writing transaction id, and transaction ids belong to a cluster.
//! `pg_upgrade` keeps them; `pg_dump`/`pg_restore` or logical replication copy the rows
//! with ids the new cluster has not reached, and new events would sort before them.
//! [`PgEventStore::migrate`] refuses such data with
//! [`PgStoreError::TransactionIdsAhead`]. To move an event store, copy it and rewrite
//! `transaction_id` to a value below the new cluster's (for example `'1'::xid8`, keeping
//! `position` order), with no writers running, then let projections rebuild.
//!
//! # Performance
//!
//! `cargo bench -p es-postgres --bench postgres` measures the store against bare
//! single-row `INSERT` transactions on a table of the same shape, in the same run; see the
//! crate README for the figures and what limits them.

mod admin;
mod checkout;
mod error;
mod health;
mod horizon;
mod inline;
mod inner;
mod keys;
mod migrate;
mod projection;
mod query;
mod read_model;
mod reader;
mod redact;
mod row;
mod schema;
mod sql;
mod store;
mod stream_reader;
mod tx;
mod wakeup;
mod xid;

pub use admin::{PgAdmin, PgLeaseInfo, PgProjectionInfo, PgSchemaStatus, PgStreamSummary};
pub use error::{PgStoreError, is_transient};
pub use horizon::{PgHorizon, PgHorizonHolder};
pub use inline::PgInlineProjection;
pub use keys::PgKeyStore;
pub use projection::{PgProjection, PgProjectionError, PgTransactionalProjection};
pub use read_model::{PgInvalidTableName, PgMigration, PgTable};
pub use schema::{PgInvalidSchemaName, PgSchemaName};
pub use store::{PgEventStore, PgEventStoreBuilder, PgPoolSettings, ping_after_idle};

#[doc(no_inline)]
pub use es_core::{CheckpointStore, DeadLetterStore, EventStore, LeaseStore, SnapshotStore, Store};
#[doc(no_inline)]
pub use sqlx::PgPool;
#[doc(no_inline)]
pub use sqlx::postgres::PgPoolOptions;
