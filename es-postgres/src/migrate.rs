//! Embedded, versioned migrations, applied by [`PgEventStore::migrate`](crate::PgEventStore::migrate).

use sqlx::{AssertSqlSafe, PgPool, Row as _};

use crate::error::PgStoreError;
use crate::schema::SchemaName;

/// One migration: its version, its name and its SQL (with `{schema}` for the schema).
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Never edit one that has been released; add a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        sql: include_str!("../migrations/0001_events.sql"),
    },
    Migration {
        version: 2,
        name: "projections",
        sql: include_str!("../migrations/0002_projections.sql"),
    },
    Migration {
        version: 3,
        name: "archive",
        sql: include_str!("../migrations/0003_archive.sql"),
    },
];

/// The newest schema version this code knows.
pub(crate) const LATEST: i32 = 3;

/// Creates the schema or brings it up to date, in one transaction.
///
/// Concurrent callers (several processes starting at once) serialise on an advisory lock
/// keyed by the schema, so each migration runs exactly once. The applied versions are kept
/// in `<schema>.es_migrations`, apart from any application migration table.
pub(crate) async fn run(pool: &PgPool, schema: &SchemaName) -> Result<Vec<i32>, PgStoreError> {
    let quoted = schema.quoted();
    let failed = PgStoreError::migrate(schema);
    let mut tx = pool.begin().await.map_err(&failed)?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('es-postgres migrations ' || $1, 0))",
    )
    .bind(schema.as_str())
    .execute(&mut *tx)
    .await
    .map_err(&failed)?;
    let setup = format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted};
         CREATE TABLE IF NOT EXISTS {quoted}.es_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    );
    sqlx::raw_sql(AssertSqlSafe(setup))
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
    let applied: Vec<(i32, String)> = sqlx::query(AssertSqlSafe(format!(
        "SELECT version, name FROM {quoted}.es_migrations ORDER BY version"
    )))
    .fetch_all(&mut *tx)
    .await
    .map_err(&failed)?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
    .collect::<Result<_, sqlx::Error>>()
    .map_err(&failed)?;

    if let Some((newest, _)) = applied.last()
        && *newest > LATEST
    {
        return Err(PgStoreError::SchemaTooNew {
            schema: schema.to_string(),
            found: *newest,
            supported: LATEST,
        });
    }
    let mut ran = Vec::new();
    for migration in MIGRATIONS {
        match applied.iter().find(|(v, _)| *v == migration.version) {
            Some((_, name)) if name == migration.name => continue,
            Some((_, name)) => {
                return Err(PgStoreError::MigrationMismatch {
                    schema: schema.to_string(),
                    version: migration.version,
                    expected: migration.name,
                    found: name.clone(),
                });
            }
            None => {}
        }
        tracing::info!(schema = %schema, version = migration.version, name = migration.name, "applying migration");
        let sql = migration.sql.replace("{schema}", &quoted);
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .map_err(&failed)?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {quoted}.es_migrations (version, name) VALUES ($1, $2)"
        )))
        .bind(migration.version)
        .bind(migration.name)
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
        ran.push(migration.version);
    }
    check_transaction_ids(&mut tx, schema).await?;
    tx.commit().await.map_err(&failed)?;
    Ok(ran)
}

/// Refuses events whose transaction ids lie ahead of the server's: see
/// [`PgStoreError::TransactionIdsAhead`].
async fn check_transaction_ids(
    tx: &mut sqlx::PgConnection,
    schema: &SchemaName,
) -> Result<(), PgStoreError> {
    let sql = format!(
        "SELECT (SELECT max(transaction_id) FROM {}.events)::text, pg_current_xact_id()::text",
        schema.quoted()
    );
    let (newest, current): (Option<String>, String) = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_one(tx)
        .await
        .map_err(PgStoreError::migrate(schema))?;
    let parse = |text: &str| text.parse::<u64>().unwrap_or_default();
    match newest {
        Some(newest) if parse(&newest) >= parse(&current) => {
            Err(PgStoreError::TransactionIdsAhead {
                schema: schema.to_string(),
                newest: parse(&newest),
                current: parse(&current),
            })
        }
        _ => Ok(()),
    }
}
