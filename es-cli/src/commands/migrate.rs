//! `es migrate [--check]`.

use es_postgres::{PgEventStore, PgSchemaStatus, PgStoreError};
use serde::Serialize;

use crate::error::CliError;
use crate::output::Output;

/// What `es migrate --json` and `es migrate --check --json` write.
#[derive(Debug, Serialize)]
struct MigrateRecord {
    schema: String,
    /// The version before (`es migrate` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<i32>,
    applied: i32,
    latest: i32,
    current: bool,
}

impl MigrateRecord {
    fn new(status: PgSchemaStatus, previous: Option<i32>) -> Self {
        Self {
            current: status.is_current(),
            schema: status.schema,
            previous,
            applied: status.applied,
            latest: status.latest,
        }
    }
}

pub(crate) async fn run(out: &Output, store: &PgEventStore, check: bool) -> Result<(), CliError> {
    let admin = store.admin();
    let before = admin.schema_status().await?;
    if check {
        if before.applied < before.latest {
            // The record first, for scripts that read it; the exit code says the rest.
            if out.json {
                out.print_json(&MigrateRecord::new(before.clone(), None))?;
            }
            return Err(CliError::SchemaBehind {
                schema: before.schema,
                applied: before.applied,
                latest: before.latest,
            });
        }
        // Up to date: what else would stop the application (a newer schema, an edited
        // migration, events copied from another cluster, missing privileges).
        store.verify().await.map_err(schema_error)?;
        return if out.json {
            out.print_json(&MigrateRecord::new(before, None))
        } else {
            out.line(&format!(
                "schema `{}` is up to date (version {})",
                before.schema, before.applied
            ))
        };
    }
    store.migrate().await.map_err(schema_error)?;
    let after = admin.schema_status().await?;
    if out.json {
        return out.print_json(&MigrateRecord::new(after, Some(before.applied)));
    }
    if after.applied == before.applied {
        out.line(&format!(
            "schema `{}` is up to date (version {})",
            after.schema, after.applied
        ))
    } else {
        out.line(&format!(
            "migrated schema `{}` from version {} to {}",
            after.schema, before.applied, after.applied
        ))
    }
}

/// A migration failure, with the CLI's advice where es-postgres gives the library's.
fn schema_error(error: PgStoreError) -> CliError {
    match error {
        PgStoreError::SchemaBehind {
            schema,
            found,
            latest,
        } => CliError::SchemaBehind {
            schema,
            applied: found,
            latest,
        },
        PgStoreError::SchemaTooNew {
            schema,
            found,
            supported,
        } => CliError::SchemaTooNew {
            schema,
            applied: found,
            latest: supported,
        },
        other => CliError::Migrate(other),
    }
}
