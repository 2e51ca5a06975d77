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

use std::process::ExitCode;

use es_asyncapi::AsyncApi;
use es_cli::App;
use es_core::error::BoxError;
use es_core::{EventEnvelope, RawEvent};
use es_postgres::{PgEventStore, PgProjection, PgTransactionalProjection};
use sqlx::{AssertSqlSafe, PgConnection};

/// Counts the events of every stream.
struct StreamSizes {
    /// `"schema".stream_sizes`.
    table: String,
    /// Whether the table is known to exist in this process.
    ready: bool,
}

impl StreamSizes {
    fn new(store: &PgEventStore) -> Self {
        Self {
            // A schema name is a validated plain identifier: quoting it is enough.
            table: format!("\"{}\".stream_sizes", store.schema().as_str()),
            ready: false,
        }
    }

    async fn create(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
        if !self.ready {
            sqlx::query(AssertSqlSafe(format!(
                "CREATE TABLE IF NOT EXISTS {} (stream_id text PRIMARY KEY, events bigint NOT NULL)",
                self.table
            )))
            .execute(&mut *tx)
            .await?;
            self.ready = true;
        }
        Ok(())
    }
}

impl PgProjection for StreamSizes {
    type Event = RawEvent;

    fn name(&self) -> &str {
        "stream-sizes"
    }

    async fn handle(
        &mut self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope<RawEvent>,
    ) -> Result<(), BoxError> {
        self.create(tx).await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (stream_id, events) VALUES ($1, 1) \
             ON CONFLICT (stream_id) DO UPDATE SET events = EXCLUDED.events + {0}.events",
            self.table
        )))
        .bind(envelope.stream_id.as_str())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
        self.create(tx).await?;
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {}", self.table)))
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
