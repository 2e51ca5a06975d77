//! An application's own `es`: the stock CLI with one projection registered, so that `es
//! projections rebuild stream-sizes`, `es projections reset stream-sizes` and `es parked
//! retry stream-sizes` run the projection's code. (es-cli's end-to-end tests run it too.)
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run -p es-cli --example embedded -- projections rebuild stream-sizes
//! ```
//!
//! The projection counts each stream's events in the table `stream_sizes` of the store's
//! schema, in the transaction that moves its checkpoint ([`PgTransactionalProjection`]).
//! It declares the table as a migration, which the runner applies before the first batch
//! (and before a rebuild's reset), and names it through [`PgTable`](es_postgres::PgTable),
//! so no SQL text is built here.

use std::process::ExitCode;

use es_asyncapi::AsyncApi;
use es_cli::App;
use es_core::error::BoxError;
use es_core::{EventEnvelope, RawEvent};
use es_postgres::{
    PgEventStore, PgInvalidTableName, PgMigration, PgProjection, PgTransactionalProjection,
};
use sqlx::{PgConnection, SqlStr};

/// The steps of the `stream_sizes` table, in order; a released step is never edited: a
/// change is a new step.
const MIGRATIONS: &[PgMigration] = &[PgMigration::new(
    1,
    "stream sizes",
    "CREATE TABLE {schema}.stream_sizes (stream_id text PRIMARY KEY, events bigint NOT NULL)",
)];

/// The projection's statements, completed with the store's schema.
struct Statements {
    count: SqlStr,
    empty: SqlStr,
}

/// Counts the events of every stream.
struct StreamSizes {
    /// A bad table name (which `stream_sizes` is not) fails the first batch: the CLI
    /// builds the projection just to learn its name too, which must not fail.
    sql: Result<Statements, PgInvalidTableName>,
}

impl StreamSizes {
    fn new(store: &PgEventStore) -> Self {
        let sql = store.table("stream_sizes").map(|table| Statements {
            count: table.sql(
                "INSERT INTO {table} (stream_id, events) VALUES ($1, 1)
                 ON CONFLICT (stream_id) DO UPDATE SET events = {table}.events + 1",
            ),
            empty: table.sql("TRUNCATE {table}"),
        });
        Self { sql }
    }

    fn sql(&self) -> Result<&Statements, PgInvalidTableName> {
        self.sql.as_ref().map_err(Clone::clone)
    }
}

impl PgProjection for StreamSizes {
    type Event = RawEvent;

    fn name(&self) -> &str {
        "stream-sizes"
    }

    fn migrations(&self) -> &[PgMigration] {
        MIGRATIONS
    }

    async fn handle(
        &mut self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope<RawEvent>,
    ) -> Result<(), BoxError> {
        sqlx::query(self.sql()?.count.clone())
            .bind(envelope.stream_id.as_str())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(self.sql()?.empty.clone())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    App::new()
        .projection(|store: &PgEventStore| {
            PgTransactionalProjection::new(store.clone(), StreamSizes::new(store))
        })
        .asyncapi(AsyncApi::new("Stream sizes", "1.0.0").description("No channels of its own."))
        .run()
        .await
}
