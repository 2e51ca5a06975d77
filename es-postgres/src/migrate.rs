//! Embedded, versioned migrations, applied by [`PgEventStore::migrate`](crate::PgEventStore::migrate).

use sqlx::{AssertSqlSafe, PgPool, Row as _};

use crate::error::PgStoreError;
use crate::schema::SchemaName;
use crate::tx::PgTx;

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
    Migration {
        version: 4,
        name: "archive under snapshot isolation",
        sql: include_str!("../migrations/0004_archive_under_snapshot_isolation.sql"),
    },
];

/// The newest schema version this code knows.
pub(crate) const LATEST: i32 = 4;

/// Creates the schema or brings it up to date, in one transaction.
///
/// Concurrent callers (several processes starting at once) serialise on an advisory lock
/// keyed by the schema, so each migration runs exactly once. The applied versions are kept
/// in `<schema>.es_migrations`, apart from any application migration table.
pub(crate) async fn run(pool: &PgPool, schema: &SchemaName) -> Result<Vec<i32>, PgStoreError> {
    let quoted = schema.quoted();
    let failed = PgStoreError::migrate(schema);
    let mut tx = PgTx::begin(pool).await.map_err(&failed)?;
    // Whatever the pool's default: a migrator that waited for the lock below must read
    // what the one before it committed, which a snapshot from before the wait would hide.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
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
         );
         ALTER TABLE {quoted}.es_migrations ADD COLUMN IF NOT EXISTS checksum text;"
    );
    sqlx::raw_sql(AssertSqlSafe(setup))
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
    let applied: Vec<(i32, String, Option<String>)> = sqlx::query(AssertSqlSafe(format!(
        "SELECT version, name, checksum FROM {quoted}.es_migrations ORDER BY version"
    )))
    .fetch_all(&mut *tx)
    .await
    .map_err(&failed)?
    .iter()
    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
    .collect::<Result<_, sqlx::Error>>()
    .map_err(&failed)?;

    if let Some((newest, _, _)) = applied.last()
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
        let checksum = checksum(migration.sql);
        match applied.iter().find(|(v, _, _)| *v == migration.version) {
            Some((_, name, _)) if name != migration.name => {
                return Err(PgStoreError::MigrationMismatch {
                    schema: schema.to_string(),
                    version: migration.version,
                    expected: migration.name,
                    found: name.clone(),
                });
            }
            Some((_, _, Some(recorded))) if *recorded != checksum => {
                return Err(PgStoreError::MigrationEdited {
                    schema: schema.to_string(),
                    version: migration.version,
                    name: migration.name,
                });
            }
            Some((_, _, Some(_))) => continue,
            // Applied before checksums were recorded: taken as it is, and recorded now.
            Some((_, _, None)) => {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE {quoted}.es_migrations SET checksum = $2 WHERE version = $1"
                )))
                .bind(migration.version)
                .bind(&checksum)
                .execute(&mut *tx)
                .await
                .map_err(&failed)?;
                continue;
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
            "INSERT INTO {quoted}.es_migrations (version, name, checksum) VALUES ($1, $2, $3)"
        )))
        .bind(migration.version)
        .bind(migration.name)
        .bind(&checksum)
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
        ran.push(migration.version);
    }
    check_transaction_ids(&mut tx, schema).await?;
    tx.commit().await.map_err(&failed)?;
    Ok(ran)
}

/// A fingerprint of a migration's text (FNV-1a, 64 bits, in hex): stable across builds and
/// platforms, so a database can tell when the migration it applied was edited since.
fn checksum(sql: &str) -> String {
    let hash = sql.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Refuses events whose transaction ids lie ahead of the server's: see
/// [`PgStoreError::TransactionIdsAhead`].
async fn check_transaction_ids(
    tx: &mut sqlx::PgConnection,
    schema: &SchemaName,
) -> Result<(), PgStoreError> {
    // Every transaction that committed a row this statement can see began below its
    // snapshot's xmax, so a stored id at or above it was not handed out by this server.
    // (Comparing with this transaction's own id instead would blame appends that began
    // after it and committed while it migrated.) No `max(xid8)`: PostgreSQL 14 lacks it;
    // the primary key's order gives the newest id at once.
    let sql = format!(
        "SELECT (SELECT transaction_id FROM {}.events ORDER BY transaction_id DESC LIMIT 1)::text, \
                pg_snapshot_xmax(pg_current_snapshot())::text",
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
