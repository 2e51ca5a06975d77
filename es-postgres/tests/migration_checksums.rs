//! Migration checksums are SHA-256 of the migration's text. Schemas migrated by releases
//! that recorded a 64-bit FNV-1a fingerprint instead migrate as they are and end with the
//! SHA-256 values; a checksum that is neither is still a migration edited after release.
//!
//! Self-contained: each test connects with sqlx and works in a schema of its own, which it
//! drops at the end.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

use es_postgres::{PgEventStore, PgStoreError};
use sha2::Digest as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

/// The fingerprint releases before SHA-256 recorded: FNV-1a, 64 bits, in hex.
fn fnv(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

fn sha256(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The texts of the migrations es-postgres ships, by version (the number their file
/// names start with).
fn migrations() -> Vec<(i32, String)> {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut found: Vec<(i32, String)> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let version = name.split('_').next().unwrap().parse().unwrap();
            (version, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    found.sort_by_key(|(version, _)| *version);
    assert!(!found.is_empty(), "no migrations in {folder}");
    found
}

/// A pool, a store on a schema of its own (migrated), and the schema's name.
async fn migrated(tag: &str) -> (PgPool, PgEventStore, String) {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL at {url}: {e}"));
    let schema = format!("es_checksums_{tag}_{}", uuid::Uuid::new_v4().simple());
    let store = PgEventStore::builder(pool.clone())
        .schema(&schema)
        .unwrap()
        .build();
    store.migrate().await.unwrap();
    (pool, store, schema)
}

async fn recorded(pool: &PgPool, schema: &str) -> Vec<(i32, String)> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT version, checksum FROM \"{schema}\".es_migrations ORDER BY version"
    )))
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn set_checksum(pool: &PgPool, schema: &str, version: i32, checksum: &str) {
    let updated = sqlx::query(AssertSqlSafe(format!(
        "UPDATE \"{schema}\".es_migrations SET checksum = $2 WHERE version = $1"
    )))
    .bind(version)
    .bind(checksum)
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(updated.rows_affected(), 1, "no migration {version}");
}

async fn drop_schema(pool: &PgPool, schema: &str) {
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_fresh_schema_records_sha256_checksums() {
    let (pool, _store, schema) = migrated("fresh").await;
    let expected: Vec<(i32, String)> = migrations()
        .iter()
        .map(|(version, text)| (*version, sha256(text)))
        .collect();
    assert_eq!(recorded(&pool, &schema).await, expected);
    drop_schema(&pool, &schema).await;
}

#[tokio::test]
async fn legacy_fnv_checksums_are_accepted_and_upgraded() {
    let (pool, store, schema) = migrated("legacy").await;
    // As a release that recorded FNV-1a fingerprints left the schema.
    for (version, text) in migrations() {
        set_checksum(&pool, &schema, version, &fnv(&text)).await;
    }
    store.verify().await.unwrap();
    store.migrate().await.unwrap();
    let expected: Vec<(i32, String)> = migrations()
        .iter()
        .map(|(version, text)| (*version, sha256(text)))
        .collect();
    assert_eq!(recorded(&pool, &schema).await, expected);
    // And from then on it is up to date.
    store.migrate().await.unwrap();
    store.verify().await.unwrap();
    assert_eq!(recorded(&pool, &schema).await, expected);

    // A mix (a schema where one migration was recorded by a newer release) upgrades too.
    let (first, text) = &migrations()[0];
    set_checksum(&pool, &schema, *first, &fnv(text)).await;
    store.migrate().await.unwrap();
    assert_eq!(recorded(&pool, &schema).await, expected);
    drop_schema(&pool, &schema).await;
}

#[tokio::test]
async fn a_checksum_of_neither_kind_is_an_edited_migration() {
    let (pool, store, schema) = migrated("tampered").await;
    let all = migrations();
    let (version, text) = &all[all.len() / 2];
    let edited = format!("{text}\n-- edited after release\n");
    // Neither the SHA-256 nor the FNV-1a of the shipped text, in either form.
    for tampered in [sha256(&edited), fnv(&edited), "something else".to_owned()] {
        set_checksum(&pool, &schema, *version, &tampered).await;
        for outcome in [store.migrate().await, store.verify().await] {
            match outcome {
                Err(PgStoreError::MigrationEdited {
                    version: reported, ..
                }) => assert_eq!(reported, *version),
                other => panic!("expected MigrationEdited for {version}, got {other:?}"),
            }
        }
        // Refused, and left as it was.
        let stored = recorded(&pool, &schema).await;
        assert!(stored.contains(&(*version, tampered.clone())), "{stored:?}");
    }
    drop_schema(&pool, &schema).await;
}

/// A login role of its own, and a pool that logs in as it.
async fn role(pool: &PgPool, tag: &str) -> (String, PgPool) {
    let name = format!("es_checksums_{tag}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(AssertSqlSafe(format!("CREATE ROLE \"{name}\" LOGIN")))
        .execute(pool)
        .await
        .unwrap();
    let options = (*pool.connect_options()).clone().username(&name);
    let as_role = PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy_with(options);
    (name, as_role)
}

async fn drop_role(pool: &PgPool, name: &str) {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP OWNED BY \"{name}\"; DROP ROLE \"{name}\""
    )))
    .execute(pool)
    .await
    .unwrap();
}

fn store_as(pool: &PgPool, schema: &str) -> PgEventStore {
    PgEventStore::builder(pool.clone())
        .schema(schema)
        .unwrap()
        .build()
}

fn expected(of: fn(&str) -> String) -> Vec<(i32, String)> {
    migrations()
        .iter()
        .map(|(version, text)| (*version, of(text)))
        .collect()
}

/// The application's role (it may not write the migrations table) migrates a schema with
/// legacy checksums as it is, leaving them; the owner's migrate then records SHA-256.
#[tokio::test]
async fn the_application_role_leaves_legacy_checksums_to_the_owner() {
    let (pool, store, schema) = migrated("app").await;
    for (version, text) in migrations() {
        set_checksum(&pool, &schema, version, &fnv(&text)).await;
    }
    let (name, as_app) = role(&pool, "app").await;
    store.grant_application_role(&name).await.unwrap();
    store_as(&as_app, &schema).migrate().await.unwrap();
    assert_eq!(recorded(&pool, &schema).await, expected(fnv));
    store.migrate().await.unwrap();
    assert_eq!(recorded(&pool, &schema).await, expected(sha256));
    as_app.close().await;
    drop_schema(&pool, &schema).await;
    drop_role(&pool, &name).await;
}

/// A role that may update every table but owns nothing (and may not create schemas)
/// upgrades legacy checksums: only the checksums change, so the schema setup, which
/// PostgreSQL refuses a non-owner even where it would do nothing, does not run.
#[tokio::test]
async fn a_role_that_may_update_but_not_own_records_the_checksums() {
    let (pool, store, schema) = migrated("writer").await;
    for (version, text) in migrations() {
        set_checksum(&pool, &schema, version, &fnv(&text)).await;
    }
    let (name, as_writer) = role(&pool, "writer").await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "GRANT USAGE ON SCHEMA \"{schema}\" TO \"{name}\";
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{name}\""
    )))
    .execute(&pool)
    .await
    .unwrap();
    store_as(&as_writer, &schema).migrate().await.unwrap();
    assert_eq!(recorded(&pool, &schema).await, expected(sha256));
    store.migrate().await.unwrap();
    assert_eq!(recorded(&pool, &schema).await, expected(sha256));

    // Refused the update itself for lack of privilege (here by a trigger of the owner's,
    // as a column privilege or policy might): the checksums stay for the owner.
    for (version, text) in migrations() {
        set_checksum(&pool, &schema, version, &fnv(&text)).await;
    }
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE FUNCTION \"{schema}\".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'permission denied' USING ERRCODE = '42501'; END $$;
         CREATE TRIGGER refuse BEFORE UPDATE ON \"{schema}\".es_migrations
         FOR EACH ROW WHEN (current_user = '{name}')
         EXECUTE FUNCTION \"{schema}\".refuse()"
    )))
    .execute(&pool)
    .await
    .unwrap();
    store_as(&as_writer, &schema).migrate().await.unwrap();
    assert_eq!(recorded(&pool, &schema).await, expected(fnv));
    store.migrate().await.unwrap();
    assert_eq!(recorded(&pool, &schema).await, expected(sha256));
    as_writer.close().await;
    drop_schema(&pool, &schema).await;
    drop_role(&pool, &name).await;
}
