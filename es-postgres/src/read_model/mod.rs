//! Read models' own tables, in the store's schema: the migrations a [`PgProjection`]
//! declares ([`PgMigration`]), applied once and recorded with a checksum as the store's own
//! are, and [`PgTable`], the safe way to name such a table in a statement.
//!
//! [`PgProjection`]: crate::PgProjection

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, SqlSafeStr as _, SqlStr};

use crate::checkout::{Checkout, within};
use crate::error::{PgStoreError, store_error};
use crate::migrate;
use crate::projection::PgProjectionError;
use crate::schema::PgSchemaName;
use crate::sql::{self, Statements};
use crate::store::PgEventStore;

/// One step of a read model's tables: its version, its name and its SQL.
///
/// The SQL may hold several statements; `{schema}` in it stands for the store's schema,
/// quoted (and `{schema_name}` for the bare name, where a statement needs it as a value).
/// A read model's migrations run in order of version (from 1, increasing), each once per
/// schema, in one transaction with the record that it ran; concurrent starters take turns,
/// so each step runs exactly once however many instances start at once. What ran is
/// recorded in the schema's `es_read_model_migrations` table, with a checksum of the SQL:
/// a step edited after it ran is refused ([`PgProjectionError::MigrationEdited`]). Never
/// edit a released step; add one with the change, with a version above every applied
/// one (one slipped in below is refused, [`PgProjectionError::MigrationBelowApplied`]:
/// it would run in another order here than on a fresh schema).
///
/// The text is `'static` (a literal or `include_str!`): a migration is code, not data, and
/// nothing but the schema is ever put into it.
///
/// ```
/// use es_postgres::PgMigration;
///
/// const STOCK_LEVELS: &[PgMigration] = &[
///     PgMigration::new(
///         1,
///         "stock levels",
///         "CREATE TABLE {schema}.stock_levels (sku text PRIMARY KEY, on_hand bigint NOT NULL)",
///     ),
///     PgMigration::new(
///         2,
///         "reorder point",
///         "ALTER TABLE {schema}.stock_levels ADD COLUMN reorder_at bigint NOT NULL DEFAULT 0",
///     ),
/// ];
/// assert_eq!(STOCK_LEVELS[1].version(), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgMigration {
    version: u32,
    name: &'static str,
    sql: &'static str,
}

impl PgMigration {
    /// Step `version` (from 1), called `name`, running `sql`.
    pub const fn new(version: u32, name: &'static str, sql: &'static str) -> Self {
        Self { version, name, sql }
    }

    /// Its version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its SQL, with the placeholders.
    pub fn sql(&self) -> &'static str {
        self.sql
    }
}

/// A read model's table in the store's schema, quoted for SQL: how a projection names its
/// table in a statement without building SQL text by hand.
///
/// Any name PostgreSQL accepts may be used (mixed case, spaces, quotes): it is always
/// double-quoted, with its quotes doubled, so it can never end the identifier. Get one from
/// [`PgEventStore::table`] (or [`PgTable::new`]) and complete statements with
/// [`sql`](PgTable::sql), once, when the projection is made:
///
/// ```no_run
/// # fn example(store: &es_postgres::PgEventStore) -> Result<(), Box<dyn std::error::Error>> {
/// let levels = store.table("stock_levels")?;
/// assert_eq!(levels.qualified(), r#""es"."stock_levels""#);
/// let receive = levels.sql(
///     "INSERT INTO {table} (sku, on_hand) VALUES ($1, $2)
///      ON CONFLICT (sku) DO UPDATE SET on_hand = {table}.on_hand + EXCLUDED.on_hand",
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PgTable {
    name: Arc<str>,
    schema: Arc<str>,
    qualified: Arc<str>,
}

/// The text is not a table name PostgreSQL keeps whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a valid table name: use 1 to 63 bytes and no NUL character (PostgreSQL cuts longer names short, so two long names could meet)"
)]
pub struct PgInvalidTableName(String);

impl PgTable {
    /// The longest name PostgreSQL keeps whole, in bytes.
    pub const MAX_LEN: usize = 63;

    /// The table `name` in `schema`.
    ///
    /// # Errors
    ///
    /// [`PgInvalidTableName`] if `name` is empty, longer than 63 bytes or holds a NUL.
    pub fn new(schema: &PgSchemaName, name: &str) -> Result<Self, PgInvalidTableName> {
        if name.is_empty() || name.len() > Self::MAX_LEN || name.contains('\0') {
            return Err(PgInvalidTableName(name.escape_debug().to_string()));
        }
        let schema = schema.quoted();
        let qualified = format!("{schema}.{}", quote(name));
        Ok(Self {
            name: Arc::from(name),
            schema: Arc::from(schema),
            qualified: Arc::from(qualified),
        })
    }

    /// The table's name, unquoted.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's name in its schema, both quoted: `"es"."stock_levels"`.
    pub fn qualified(&self) -> &str {
        &self.qualified
    }

    /// `template` with `{table}` replaced by the [qualified](PgTable::qualified) name and
    /// `{schema}` by the quoted schema: a statement to run with
    /// [`sqlx::query`](fn@sqlx::query) and bind parameters for every value. The template is
    /// `'static` so that nothing but quoted identifiers is ever put into a statement.
    /// Clones of the result are cheap: complete statements once and clone them per use.
    pub fn sql(&self, template: &'static str) -> SqlStr {
        // The schema first: the table's name may itself hold `{schema}`, which must stay
        // as it is inside its quotes.
        let text = template
            .replace("{schema}", &self.schema)
            .replace("{table}", &self.qualified);
        AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
    }
}

impl fmt::Display for PgTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.qualified)
    }
}

impl fmt::Debug for PgTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTable({})", self.qualified)
    }
}

/// `name` double-quoted, its own double quotes doubled: an identifier that cannot end early.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PgEventStore {
    /// The table `name` in this store's schema (see [`PgTable`]).
    ///
    /// # Errors
    ///
    /// [`PgInvalidTableName`] if `name` is empty, longer than 63 bytes or holds a NUL.
    pub fn table(&self, name: &str) -> Result<PgTable, PgInvalidTableName> {
        PgTable::new(self.schema(), name)
    }

    /// Applies the migrations of read model `read_model` that this schema has not applied
    /// yet, in order, in one transaction, and returns their versions (none if it was up to
    /// date). A [`PgTransactionalProjection`](crate::PgTransactionalProjection) does this
    /// itself, with its projection's [`migrations`](crate::PgProjection::migrations),
    /// before its first batch; call it yourself to apply them at deployment, as a role
    /// that may change the schema, and let the application run with less (a read model up
    /// to date is only read: the role then needs `SELECT` on `es_read_model_migrations`
    /// and what its statements do to its tables).
    ///
    /// Safe to run from several processes at once: they take turns (with the store's own
    /// migrations), and each step runs once.
    ///
    /// # Errors
    ///
    /// [`PgProjectionError::MigrationEdited`], [`PgProjectionError::UnknownMigration`],
    /// [`PgProjectionError::MigrationBelowApplied`] or
    /// [`PgProjectionError::MigrationsOutOfOrder`] (nothing is applied), or
    /// [`PgProjectionError::Database`] if a step fails (the transaction, and so every
    /// step of this call, is rolled back) or the server cannot be reached.
    pub async fn migrate_read_model(
        &self,
        read_model: &str,
        migrations: &[PgMigration],
    ) -> Result<Vec<u32>, PgProjectionError> {
        apply(self, read_model, migrations).await
    }
}

/// A migration as the schema recorded it (`sql/read_model_recorded.sql`).
pub(crate) struct Recorded {
    version: i32,
    name: String,
    checksum: String,
}

impl Recorded {
    /// The columns it is read from, by name.
    #[cfg(test)]
    pub(crate) const COLUMNS: &[&str] = &["version", "name", "checksum"];
}

/// The migrations of `read_model` that `store`'s schema has yet to apply; see
/// [`PgEventStore::migrate_read_model`].
pub(crate) async fn apply(
    store: &PgEventStore,
    read_model: &str,
    migrations: &[PgMigration],
) -> Result<Vec<u32>, PgProjectionError> {
    apply_waiting(store, read_model, migrations, None).await
}

/// How long a runner's start waits for the migration lock where the store has no reply
/// deadline.
pub(crate) const LOCK_WAIT_WITHOUT_DEADLINE: Duration = Duration::from_secs(60);

/// As [`apply`], for a runner's start: waiting for the migration lock at most the store's
/// reply deadline ([`LOCK_WAIT_WITHOUT_DEADLINE`] where it has none), then failing with
/// [`PgProjectionError::MigrationLockTimeout`], transient, rather than hanging the
/// runner's start behind a deployment's long migration.
pub(crate) async fn apply_at_start(
    store: &PgEventStore,
    read_model: &str,
    migrations: &[PgMigration],
) -> Result<Vec<u32>, PgProjectionError> {
    let limit = store
        .inner
        .reply_timeout
        .unwrap_or(LOCK_WAIT_WITHOUT_DEADLINE);
    apply_waiting(store, read_model, migrations, Some(limit)).await
}

/// [`apply`], waiting for the migration lock without end (`None`) or at most `limit`.
async fn apply_waiting(
    store: &PgEventStore,
    read_model: &str,
    migrations: &[PgMigration],
    limit: Option<Duration>,
) -> Result<Vec<u32>, PgProjectionError> {
    if migrations.is_empty() {
        return Ok(Vec::new());
    }
    let refused = Refusals {
        read_model,
        schema: store.schema(),
    };
    refused.check_order(migrations)?;
    let pool = store.pool();
    let schema = store.schema();
    let statements = &store.inner.sql;
    let failed = |operation| move |error| refused.database(operation, error);

    // Read only, first: a read model up to date costs one query and takes no lock, and a
    // role that may not change the schema may start it.
    let deadline = store.inner.reply_timeout;
    let mut connection = within(deadline, Checkout::take(pool))
        .await
        .map_err(failed("read model migrations"))?;
    let applied = within(deadline, recorded(&mut connection, statements, read_model))
        .await
        .map_err(failed("read model migrations"))?;
    connection.finish();
    drop(connection);
    if refused.pending(migrations, &applied)?.is_empty() {
        return Ok(Vec::new());
    }

    // The store's migration lock, transaction and deadlines: a schema change may wait for
    // the lock and take long, and concurrent migrators take turns.
    let locked = match limit {
        None => migrate::begin_locked(pool, schema).await.map(Some),
        Some(limit) => migrate::begin_locked_within(pool, schema, limit).await,
    };
    let locked = locked.map_err(|error| match error {
        PgStoreError::Migrate { source, .. } => refused.database("read model migrations", source),
        other => PgProjectionError::Database {
            projection: read_model.to_owned(),
            source: es_core::StoreError::new("read model migrations", other),
        },
    })?;
    let Some(mut tx) = locked else {
        return Err(refused.lock_timeout(limit.unwrap_or_default()));
    };
    sqlx::raw_sql(statements.read_model_setup.clone())
        .execute(&mut *tx)
        .await
        .map_err(failed("read model migrations"))?;
    // Again under the lock: another instance may have applied them meanwhile.
    let applied = recorded(&mut tx, statements, read_model)
        .await
        .map_err(failed("read model migrations"))?;
    let mut ran = Vec::new();
    for migration in refused.pending(migrations, &applied)? {
        tracing::info!(
            schema = %schema,
            read_model,
            version = migration.version,
            name = migration.name,
            "applying read model migration"
        );
        let step = |error| refused.database_at(migration, error);
        sqlx::raw_sql(sql::migration(migration.sql, schema))
            .execute(&mut *tx)
            .await
            .map_err(step)?;
        sqlx::query(statements.read_model_record.clone())
            .bind(read_model)
            .bind(version_of(migration))
            .bind(migration.name)
            .bind(migrate::checksum(migration.sql))
            .execute(&mut *tx)
            .await
            .map_err(step)?;
        ran.push(migration.version);
    }
    tx.commit().await.map_err(failed("read model migrations"))?;
    Ok(ran)
}

/// The migrations `schema` recorded for `read_model`, in order; none if it recorded no
/// read model's yet.
async fn recorded(
    connection: &mut sqlx::PgConnection,
    statements: &Statements,
    read_model: &str,
) -> Result<Vec<Recorded>, sqlx::Error> {
    use sqlx::Row as _;
    let exists: bool = sqlx::query_scalar(statements.read_model_exists.clone())
        .fetch_one(&mut *connection)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(statements.read_model_recorded.clone())
        .bind(read_model)
        .fetch_all(&mut *connection)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Recorded {
                version: row.try_get("version")?,
                name: row.try_get("name")?,
                checksum: row.try_get("checksum")?,
            })
        })
        .collect()
}

/// A declared version as the table keeps it (versions are checked to fit first).
fn version_of(migration: &PgMigration) -> i32 {
    i32::try_from(migration.version).unwrap_or(i32::MAX)
}

/// The typed errors of one read model's migrations.
#[derive(Clone, Copy)]
struct Refusals<'a> {
    read_model: &'a str,
    schema: &'a PgSchemaName,
}

impl Refusals<'_> {
    /// Versions from 1, increasing, each fitting the table's integer.
    fn check_order(&self, migrations: &[PgMigration]) -> Result<(), PgProjectionError> {
        let mut previous = 0;
        for migration in migrations {
            if migration.version <= previous || i32::try_from(migration.version).is_err() {
                return Err(PgProjectionError::MigrationsOutOfOrder {
                    projection: self.read_model.to_owned(),
                    version: migration.version,
                    previous,
                });
            }
            previous = migration.version;
        }
        Ok(())
    }

    /// What of `migrations` the schema has not applied; an error if what it applied is not
    /// what they say, or if one not applied comes below one applied (it would run in
    /// another order here than on a fresh schema).
    fn pending<'m>(
        &self,
        migrations: &'m [PgMigration],
        recorded: &[Recorded],
    ) -> Result<Vec<&'m PgMigration>, PgProjectionError> {
        if let Some(unknown) = recorded
            .iter()
            .find(|r| !migrations.iter().any(|m| version_of(m) == r.version))
        {
            return Err(PgProjectionError::UnknownMigration {
                projection: self.read_model.to_owned(),
                schema: self.schema.to_string(),
                version: u32::try_from(unknown.version).unwrap_or_default(),
                name: unknown.name.clone(),
            });
        }
        let mut pending = Vec::new();
        for migration in migrations {
            match recorded.iter().find(|r| r.version == version_of(migration)) {
                None => pending.push(migration),
                Some(r)
                    if r.name == migration.name
                        && r.checksum == migrate::checksum(migration.sql) => {}
                Some(r) => {
                    return Err(PgProjectionError::MigrationEdited {
                        projection: self.read_model.to_owned(),
                        schema: self.schema.to_string(),
                        version: migration.version,
                        applied: r.name.clone(),
                        declared: migration.name,
                    });
                }
            }
        }
        let highest = recorded.iter().map(|r| r.version).max().unwrap_or(0);
        if let Some(below) = pending.iter().find(|m| version_of(m) < highest) {
            return Err(PgProjectionError::MigrationBelowApplied {
                projection: self.read_model.to_owned(),
                schema: self.schema.to_string(),
                version: below.version,
                name: below.name,
                highest: u32::try_from(highest).unwrap_or_default(),
            });
        }
        Ok(pending)
    }

    fn lock_timeout(&self, waited: Duration) -> PgProjectionError {
        PgProjectionError::MigrationLockTimeout {
            projection: self.read_model.to_owned(),
            schema: self.schema.to_string(),
            waited,
            source: es_core::StoreError::new(
                "read model migration lock",
                "another migration of the schema held the lock",
            )
            .with_kind(es_core::StoreErrorKind::Timeout),
        }
    }

    fn database(&self, operation: &'static str, error: sqlx::Error) -> PgProjectionError {
        PgProjectionError::Database {
            projection: self.read_model.to_owned(),
            source: store_error(operation, error).with_context(format!(
                "read model `{}` in schema `{}`",
                self.read_model, self.schema
            )),
        }
    }

    fn database_at(&self, migration: &PgMigration, error: sqlx::Error) -> PgProjectionError {
        PgProjectionError::Database {
            projection: self.read_model.to_owned(),
            source: store_error("read model migration", error).with_context(format!(
                "migration {} (`{}`) of read model `{}` in schema `{}`",
                migration.version, migration.name, self.read_model, self.schema
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> PgSchemaName {
        PgSchemaName::new("es").unwrap()
    }

    #[test]
    fn tables_are_quoted_whatever_their_name() {
        let plain = PgTable::new(&schema(), "stock_levels").unwrap();
        assert_eq!(plain.qualified(), "\"es\".\"stock_levels\"");
        let hostile = PgTable::new(&schema(), "x\"; DROP TABLE y; --").unwrap();
        assert_eq!(hostile.qualified(), "\"es\".\"x\"\"; DROP TABLE y; --\"");
        let braces = PgTable::new(&schema(), "{schema}{table}").unwrap();
        assert_eq!(
            braces
                .sql("SELECT 1 FROM {table} JOIN {schema}.events ON true")
                .as_str(),
            "SELECT 1 FROM \"es\".\"{schema}{table}\" JOIN \"es\".events ON true"
        );
        for bad in ["", "a\0b", &"x".repeat(64)] {
            assert!(PgTable::new(&schema(), bad).is_err(), "{bad:?}");
        }
        assert!(PgTable::new(&schema(), &"é".repeat(31)).is_ok());
    }

    #[test]
    fn versions_start_at_one_and_increase() {
        let refused = Refusals {
            read_model: "levels",
            schema: &schema(),
        };
        let step = |version| PgMigration::new(version, "step", "SELECT 1");
        assert!(refused.check_order(&[step(1), step(2), step(5)]).is_ok());
        for bad in [
            vec![step(0)],
            vec![step(1), step(1)],
            vec![step(2), step(1)],
            vec![step(u32::MAX)],
        ] {
            assert!(
                matches!(
                    refused.check_order(&bad),
                    Err(PgProjectionError::MigrationsOutOfOrder { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
