//! Embedded, versioned migrations, applied by [`PgEventStore::migrate`](crate::PgEventStore::migrate).

use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::error::PgStoreError;
use crate::schema::PgSchemaName;
use crate::sql::{self, Statements};
use crate::tx::PgTx;
use crate::xid::Xid8;

/// One migration: its version, its name and its SQL (with `{schema}` for the quoted
/// schema, `{schema_name}` for the bare name).
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
    Migration {
        version: 5,
        name: "horizon of this database",
        sql: include_str!("../migrations/0005_horizon_of_this_database.sql"),
    },
    Migration {
        version: 6,
        name: "application role",
        sql: include_str!("../migrations/0006_application_role.sql"),
    },
    Migration {
        version: 7,
        name: "traceparent",
        sql: include_str!("../migrations/0007_traceparent.sql"),
    },
    Migration {
        version: 8,
        name: "tags",
        sql: include_str!("../migrations/0008_tags.sql"),
    },
    Migration {
        version: 9,
        name: "cheaper checks",
        sql: include_str!("../migrations/0009_cheaper_checks.sql"),
    },
    Migration {
        version: 10,
        name: "subject keys",
        sql: include_str!("../migrations/0010_subject_keys.sql"),
    },
    Migration {
        version: 11,
        name: "forgotten keys",
        sql: include_str!("../migrations/0011_forgotten_keys.sql"),
    },
    Migration {
        version: 12,
        name: "cheaper conditional appends",
        sql: include_str!("../migrations/0012_cheaper_conditional_appends.sql"),
    },
];

/// The schema and the migrations table, before any migration (idempotent).
const SETUP: &str = "CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.es_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE {schema}.es_migrations ADD COLUMN IF NOT EXISTS checksum text;";

/// The newest schema version this code knows.
pub(crate) const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// A migration as the schema recorded it (`sql/migrations_recorded.sql`).
#[derive(Debug)]
pub(crate) struct Applied {
    version: i32,
    name: String,
    /// None if it was applied before checksums were recorded.
    checksum: Option<String>,
}

impl Applied {
    /// The columns it is read from, by name.
    #[cfg(test)]
    pub(crate) const COLUMNS: &[&str] = &["version", "name", "checksum"];
}

impl sqlx::FromRow<'_, sqlx::postgres::PgRow> for Applied {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        Ok(Self {
            version: row.try_get("version")?,
            name: row.try_get("name")?,
            checksum: row.try_get("checksum")?,
        })
    }
}

/// Creates the schema or brings it up to date, in one transaction.
///
/// A schema that is up to date is only read, so that a role without the right to change
/// it (the application's, see [`verify`]) may call this at every start. Otherwise
/// concurrent callers (several processes starting at once) serialise on an advisory lock
/// keyed by the schema, so each migration runs exactly once. The applied versions are kept
/// in `<schema>.es_migrations`, apart from any application migration table.
pub(crate) async fn run(
    pool: &PgPool,
    schema: &PgSchemaName,
    statements: &Statements,
) -> Result<Vec<i32>, PgStoreError> {
    let failed = PgStoreError::migrate(schema);
    let mut connection = pool.acquire().await.map_err(&failed)?;
    // Whether the schema is current but for checksums in the legacy form: then only those
    // are rewritten, with no schema change (not even SETUP's `IF NOT EXISTS` ones, which
    // PostgreSQL refuses a role that does not own the schema before it sees they would do
    // nothing).
    let mut checksums_only = false;
    if let Some(applied) = recorded(&mut connection, schema, statements).await? {
        let pending = pending(schema, &applied)?;
        checksums_only = only_legacy_checksums(&pending, &applied);
        if pending.is_empty()
            || (checksums_only && !may_record_checksums(&mut connection, schema).await?)
        {
            check_transaction_ids(&mut connection, schema, statements).await?;
            return Ok(Vec::new());
        }
    }
    drop(connection);
    if checksums_only {
        match record_checksums(pool, schema, statements).await {
            // A role that may update the table yet is refused (a column privilege, a
            // policy of the owner's): the checksums are left to the owner's next
            // `migrate`, and the schema is taken as it is, as when it may not update.
            Err(PgStoreError::Migrate { source, .. })
                if crate::error::is_insufficient_privilege(&source) =>
            {
                tracing::info!(schema = %schema, "checksums left in the legacy form for the schema's owner to record");
                let mut connection = pool.acquire().await.map_err(&failed)?;
                check_transaction_ids(&mut connection, schema, statements).await?;
                return Ok(Vec::new());
            }
            outcome => return outcome,
        }
    }

    let mut tx = begin_locked(pool, schema).await?;
    sqlx::raw_sql(sql::migration(SETUP, schema))
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
    let applied = recorded(&mut tx, schema, statements)
        .await?
        .unwrap_or_default();
    let mut ran = Vec::new();
    for migration in pending(schema, &applied)? {
        let checksum = checksum(migration.sql);
        if applied.iter().any(|a| a.version == migration.version) {
            // Applied before checksums were recorded, or recorded with the legacy
            // fingerprint of this same text: taken as it is, and recorded now.
            sqlx::query(statements.migration_checksum.clone())
                .bind(migration.version)
                .bind(&checksum)
                .execute(&mut *tx)
                .await
                .map_err(&failed)?;
            continue;
        }
        tracing::info!(schema = %schema, version = migration.version, name = migration.name, "applying migration");
        sqlx::raw_sql(sql::migration(migration.sql, schema))
            .execute(&mut *tx)
            .await
            .map_err(&failed)?;
        sqlx::query(statements.migration_record.clone())
            .bind(migration.version)
            .bind(migration.name)
            .bind(&checksum)
            .execute(&mut *tx)
            .await
            .map_err(&failed)?;
        ran.push(migration.version);
    }
    check_transaction_ids(&mut tx, schema, statements).await?;
    tx.commit().await.map_err(&failed)?;
    Ok(ran)
}

/// A transaction holding the migration lock of `schema`: concurrent migrators take turns,
/// each waiting as long as the one before it takes (a deployment's migration).
pub(crate) async fn begin_locked(
    pool: &PgPool,
    schema: &PgSchemaName,
) -> Result<PgTx, PgStoreError> {
    let failed = PgStoreError::migrate(schema);
    let mut tx = PgTx::begin(pool).await.map_err(&failed)?;
    // Whatever the pool's default: a migrator that waited for the lock below must read
    // what the one before it committed, which a snapshot from before the wait would hide.
    // A schema change on a large table may take long, and waiting for another migrator is
    // expected: the session's deadlines do not apply here (lock waits for the schema
    // changes themselves keep theirs, below).
    sqlx::raw_sql(
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; \
         SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0",
    )
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
    keep_lock_deadline(tx, schema).await
}

/// Pauses between tries of [`begin_locked_within`]: another migrator's step is usually
/// over in milliseconds, a long one is not worth asking after more than a few times a
/// second.
const LOCK_RETRY: es_core::Backoff =
    es_core::Backoff::new(Duration::from_millis(10), Duration::from_millis(250));

/// As [`begin_locked`], but waiting at most `limit` for the lock: `None` if another
/// migrator held it all that time. For a migration that runs where waiting without end
/// would hang something else (a projection runner's start).
pub(crate) async fn begin_locked_within(
    pool: &PgPool,
    schema: &PgSchemaName,
    limit: Duration,
) -> Result<Option<PgTx>, PgStoreError> {
    let failed = PgStoreError::migrate(schema);
    let give_up = Instant::now() + limit;
    let mut tx = PgTx::begin(pool).await.map_err(&failed)?;
    // As in `begin_locked`; the session's statement deadline holds each try, which does
    // not wait.
    sqlx::raw_sql("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
    let mut tries = 0;
    loop {
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('es-postgres migrations ' || $1, 0))",
        )
        .bind(schema.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(&failed)?;
        if locked {
            break;
        }
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        tries += 1;
        tokio::time::sleep(LOCK_RETRY.pause(tries).min(left)).await;
    }
    // Held: the schema changes may take long, as in `begin_locked`.
    sqlx::raw_sql("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
    keep_lock_deadline(tx, schema).await.map(Some)
}

/// `tx`, holding the migration lock, with the session's lock deadline for what follows.
async fn keep_lock_deadline(mut tx: PgTx, schema: &PgSchemaName) -> Result<PgTx, PgStoreError> {
    // A schema change queued behind a long transaction would block every append queued
    // behind it: with the session's lock deadline it fails instead, and can be run again.
    sqlx::raw_sql("SET LOCAL lock_timeout TO DEFAULT")
        .execute(&mut *tx)
        .await
        .map_err(PgStoreError::migrate(schema))?;
    Ok(tx)
}

/// Records the SHA-256 checksums of the migrations `schema` recorded in the legacy form,
/// and changes nothing else: no SETUP, so a role that may update the migrations table but
/// does not own the schema can do it.
async fn record_checksums(
    pool: &PgPool,
    schema: &PgSchemaName,
    statements: &Statements,
) -> Result<Vec<i32>, PgStoreError> {
    let failed = PgStoreError::migrate(schema);
    let mut tx = begin_locked(pool, schema).await?;
    let applied = recorded(&mut tx, schema, statements)
        .await?
        .unwrap_or_default();
    for migration in pending(schema, &applied)? {
        // The schema was current but for checksums when read, and no migrator takes a
        // migration back: each pending one is a checksum to record.
        if applied.iter().any(|a| a.version == migration.version) {
            sqlx::query(statements.migration_checksum.clone())
                .bind(migration.version)
                .bind(checksum(migration.sql))
                .execute(&mut *tx)
                .await
                .map_err(&failed)?;
        }
    }
    check_transaction_ids(&mut tx, schema, statements).await?;
    tx.commit().await.map_err(&failed)?;
    Ok(Vec::new())
}

/// The migrations `schema` recorded, in order; `None` if it has no migrations table.
async fn recorded(
    connection: &mut sqlx::PgConnection,
    schema: &PgSchemaName,
    statements: &Statements,
) -> Result<Option<Vec<Applied>>, PgStoreError> {
    let failed = PgStoreError::migrate(schema);
    let table = format!("{}.es_migrations", schema.quoted());
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&table)
        .fetch_one(&mut *connection)
        .await
        .map_err(&failed)?;
    if !exists {
        return Ok(None);
    }
    sqlx::query_as(statements.migrations_recorded.clone())
        .fetch_all(&mut *connection)
        .await
        .map(Some)
        .map_err(&failed)
}

/// The migrations `schema` has yet to apply, or to record a checksum for; an error if what
/// it recorded is not what this code has.
fn pending(
    schema: &PgSchemaName,
    applied: &[Applied],
) -> Result<Vec<&'static Migration>, PgStoreError> {
    if let Some(newest) = applied.last()
        && newest.version > LATEST
    {
        return Err(PgStoreError::SchemaTooNew {
            schema: schema.to_string(),
            found: newest.version,
            supported: LATEST,
        });
    }
    let mut pending = Vec::new();
    for migration in MIGRATIONS {
        let Some(recorded) = applied.iter().find(|a| a.version == migration.version) else {
            pending.push(migration);
            continue;
        };
        if recorded.name != migration.name {
            return Err(PgStoreError::MigrationMismatch {
                schema: schema.to_string(),
                version: migration.version,
                expected: migration.name,
                found: recorded.name.clone(),
            });
        }
        match recorded.checksum.as_deref() {
            None => pending.push(migration),
            Some(sum) if sum == checksum(migration.sql) => {}
            // The same text, fingerprinted by an older es-postgres: its checksum is
            // recorded anew.
            Some(sum) if sum == legacy_checksum(migration.sql) => pending.push(migration),
            Some(_) => {
                return Err(PgStoreError::MigrationEdited {
                    schema: schema.to_string(),
                    version: migration.version,
                    name: migration.name,
                });
            }
        }
    }
    Ok(pending)
}

/// Whether all that `pending` holds is migrations `applied` recorded with a checksum (the
/// legacy one, as [`pending`] let through only those): nothing to change in the schema.
fn only_legacy_checksums(pending: &[&Migration], applied: &[Applied]) -> bool {
    pending.iter().all(|migration| {
        applied
            .iter()
            .any(|a| a.version == migration.version && a.checksum.is_some())
    })
}

/// Whether the current role may record checksums. The application's role may not (it
/// only reads the migrations table, see migration 0006), yet calls `migrate` at every
/// start: a schema whose only lack is new-style checksums is then taken as it is, read
/// only, and its owner's next `migrate` records them.
async fn may_record_checksums(
    connection: &mut sqlx::PgConnection,
    schema: &PgSchemaName,
) -> Result<bool, PgStoreError> {
    sqlx::query_scalar("SELECT has_table_privilege($1, 'UPDATE')")
        .bind(format!("{}.es_migrations", schema.quoted()))
        .fetch_one(&mut *connection)
        .await
        .map_err(PgStoreError::migrate(schema))
}

/// Checks, reading only, that `schema` is what this code needs: every migration applied
/// as this code has it, no transaction ids from another cluster, and the privileges the
/// store uses granted to the current role.
pub(crate) async fn verify(
    pool: &PgPool,
    schema: &PgSchemaName,
    statements: &Statements,
) -> Result<(), PgStoreError> {
    let mut connection = pool
        .acquire()
        .await
        .map_err(PgStoreError::migrate(schema))?;
    let applied = recorded(&mut connection, schema, statements)
        .await?
        .unwrap_or_default();
    let behind: Vec<i32> = pending(schema, &applied)?
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .map(|m| m.version)
        .collect();
    if !behind.is_empty() {
        return Err(PgStoreError::SchemaBehind {
            schema: schema.to_string(),
            found: applied.last().map_or(0, |a| a.version),
            latest: LATEST,
        });
    }
    // Privileges first: without them the other checks fail as raw refusals.
    check_privileges(&mut connection, schema).await?;
    check_transaction_ids(&mut connection, schema, statements).await
}

/// The privileges the store uses, as `(table, privilege)`.
const PRIVILEGES: &[(&str, &str)] = &[
    ("events", "SELECT"),
    ("archived_streams", "SELECT"),
    ("snapshots", "SELECT"),
    ("snapshots", "INSERT"),
    ("snapshots", "UPDATE"),
    ("checkpoints", "SELECT"),
    ("checkpoints", "INSERT"),
    ("checkpoints", "UPDATE"),
    ("checkpoints", "DELETE"),
    ("parked_events", "SELECT"),
    ("parked_events", "INSERT"),
    ("parked_events", "UPDATE"),
    ("parked_events", "DELETE"),
    ("leases", "SELECT"),
    ("leases", "INSERT"),
    ("leases", "UPDATE"),
    ("leases", "DELETE"),
    ("subject_keys", "SELECT"),
    ("forgotten_subjects", "SELECT"),
    ("forgotten_keys", "SELECT"),
];

/// The columns of `events` an append names.
const APPEND_COLUMNS: &[&str] = &[
    "stream_id",
    "version",
    "event_id",
    "event_type",
    "schema_version",
    "payload",
    "correlation_id",
    "causation_id",
    "actor",
    "metadata",
    "traceparent",
    "tags",
];

/// The columns of `subject_keys` a key store inserts (`PgKeyStore`).
const KEY_COLUMNS: &[&str] = &["subject", "key_id", "wrapped"];

async fn check_privileges(
    connection: &mut sqlx::PgConnection,
    schema: &PgSchemaName,
) -> Result<(), PgStoreError> {
    let quoted = schema.quoted();
    let (tables, privileges): (Vec<String>, Vec<&str>) = PRIVILEGES
        .iter()
        .map(|(table, privilege)| (format!("{quoted}.{table}"), *privilege))
        .unzip();
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT 'USAGE on schema ' || $5 WHERE NOT has_schema_privilege($7, 'USAGE') \
         UNION ALL \
         SELECT t.privilege || ' on ' || t.tab FROM unnest($1::text[], $2::text[]) AS t(tab, privilege) \
         WHERE NOT has_table_privilege(t.tab, t.privilege) \
         UNION ALL \
         SELECT 'INSERT on ' || $3 || ' (' || c || ')' FROM unnest($4::text[]) AS c \
         WHERE NOT has_column_privilege($3, c, 'INSERT') \
         UNION ALL \
         SELECT 'INSERT on ' || $5 || '.archived_streams (stream_id)' \
         WHERE NOT has_column_privilege($5 || '.archived_streams', 'stream_id', 'INSERT') \
         UNION ALL \
         SELECT 'INSERT on ' || $5 || '.subject_keys (' || c || ')' FROM unnest($8::text[]) AS c \
         WHERE NOT has_column_privilege($5 || '.subject_keys', c, 'INSERT') \
         UNION ALL \
         SELECT 'EXECUTE on ' || f FROM unnest($6::text[]) AS f \
         WHERE NOT has_function_privilege(f, 'EXECUTE') \
         UNION ALL \
         SELECT 'SELECT on ' || c FROM unnest(ARRAY['pg_catalog.pg_prepared_xacts', \
             'pg_catalog.pg_database', 'pg_catalog.pg_stat_activity', 'pg_catalog.pg_locks']) AS c \
         WHERE NOT has_table_privilege(c, 'SELECT') \
         UNION ALL \
         SELECT 'EXECUTE on ' || f FROM unnest(ARRAY['pg_catalog.pg_stat_get_activity(integer)', \
             'pg_catalog.pg_blocking_pids(integer)', 'pg_catalog.pg_sleep(double precision)', \
             'pg_catalog.pg_xact_status(xid8)', 'pg_catalog.pg_stat_clear_snapshot()', \
             'pg_catalog.pg_advisory_xact_lock_shared(bigint)', \
             'pg_catalog.pg_try_advisory_xact_lock(bigint)', \
             'pg_catalog.pg_try_advisory_xact_lock(integer, integer)', \
             'pg_catalog.pg_try_advisory_xact_lock_shared(bigint)', \
             'pg_catalog.pg_try_advisory_xact_lock_shared(integer, integer)']) AS f \
         WHERE NOT has_function_privilege(f, 'EXECUTE')",
    )
    .bind(&tables)
    .bind(&privileges)
    .bind(format!("{quoted}.events"))
    .bind(APPEND_COLUMNS)
    .bind(&quoted)
    .bind([
        format!("{quoted}.es_stream_open(text)"),
        format!("{quoted}.es_horizon()"),
        format!(
            "{quoted}.es_append_if(text, bigint, uuid[], text[], int4[], jsonb[], uuid[], \
             uuid[], text[], jsonb[], text[], text[], jsonb, text[], xid8, bigint, float8[], \
             float8)"
        ),
        format!("{quoted}.es_read_query_tagged(xid8, bigint, text[], jsonb, bigint)"),
        format!("{quoted}.es_notify(text)"),
        format!("{quoted}.es_forget_subject(text, text)"),
    ])
    .bind(schema.as_str())
    .bind(KEY_COLUMNS)
    .fetch_all(&mut *connection)
    .await
    .map_err(PgStoreError::migrate(schema))?;
    if missing.is_empty() {
        return Ok(());
    }
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *connection)
        .await
        .map_err(PgStoreError::migrate(schema))?;
    Err(PgStoreError::MissingPrivileges {
        schema: schema.to_string(),
        role,
        missing,
    })
}

/// Grants `role` what running the store takes (migration 0006).
pub(crate) async fn grant_application_role(
    pool: &PgPool,
    schema: &PgSchemaName,
    statements: &Statements,
    role: &str,
) -> Result<(), PgStoreError> {
    sqlx::query(statements.grant_application.clone())
        .bind(role)
        .execute(pool)
        .await
        .map_err(PgStoreError::migrate(schema))?;
    Ok(())
}

/// The checksum of a migration's text (SHA-256, in lowercase hex), which the schema
/// records with each migration, so that it can tell when the migration it applied was
/// edited since.
pub(crate) fn checksum(sql: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(sql.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The fingerprint earlier es-postgres releases recorded instead of [`checksum`]
/// (FNV-1a, 64 bits, in hex). Kept only to read what those releases wrote: a recorded
/// value equal to this fingerprint of the same text is that text, and is recorded anew
/// with the SHA-256 checksum. Never written.
fn legacy_checksum(sql: &str) -> String {
    let hash = sql.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Refuses events whose transaction ids lie ahead of the server's: see
/// [`PgStoreError::TransactionIdsAhead`].
async fn check_transaction_ids(
    tx: &mut sqlx::PgConnection,
    schema: &PgSchemaName,
    statements: &Statements,
) -> Result<(), PgStoreError> {
    use sqlx::Row as _;
    // Why the server's next id is the bound: see the statement.
    let row = sqlx::query(statements.transaction_ids.clone())
        .fetch_one(tx)
        .await
        .map_err(PgStoreError::migrate(schema))?;
    let ids = || -> Result<(Option<Xid8>, Xid8), sqlx::Error> {
        Ok((row.try_get("newest")?, row.try_get("next_id")?))
    };
    let (newest, Xid8(current)) = ids().map_err(PgStoreError::migrate(schema))?;
    match newest {
        Some(Xid8(newest)) if newest >= current => Err(PgStoreError::TransactionIdsAhead {
            schema: schema.to_string(),
            newest,
            current,
        }),
        _ => Ok(()),
    }
}
