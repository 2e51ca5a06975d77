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
