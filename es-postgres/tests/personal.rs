//! Crypto-shredding on PostgreSQL, seen from the database: with events, a snapshot and a
//! transactional read model written through `Protected` and the PostgreSQL key store, no
//! table of the store's schema holds a personal value in clear except the read model that
//! shows it; once the subject is forgotten and the read model rebuilt, none does.
//!
//! The behaviours common to every store (each read path, snapshots, projections, repeats)
//! are es-testkit's `personal_contract!`, run on PostgreSQL in `conformance_protected.rs`.

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use es_core::error::BoxError;
use es_core::personal::{LocalKeyEncryption, Protected, Subject};
use es_core::{
    EventEnvelope, EventStore as _, ExpectedVersion, NewEvent, ProjectionRunner, Repository,
    SnapshotPolicy, StreamId,
};
use es_postgres::{PgEventStore, PgKeyStore, PgMigration, PgProjection, PgTransactionalProjection};
use es_testkit::customers::{Customer, CustomerCommand, CustomerEvent, FORGOTTEN_NAME};
use sqlx::{AssertSqlSafe, PgConnection, SqlStr};

const NAME: &str = "Grace Brewster Hopper";
const ADDRESS: &str = "Arlington, Virginia";

const MIGRATIONS: &[PgMigration] = &[PgMigration::new(
    1,
    "customer names",
    "CREATE TABLE {schema}.customer_names (customer_id text PRIMARY KEY, name text NOT NULL)",
)];

/// A read model of customers' names, in the store's schema.
struct Names {
    upsert: SqlStr,
    empty: SqlStr,
}

impl Names {
    fn new(store: &PgEventStore) -> Self {
        let table = store.table("customer_names").unwrap();
        Self {
            upsert: table.sql(
                "INSERT INTO {table} (customer_id, name) VALUES ($1, $2)
                 ON CONFLICT (customer_id) DO UPDATE SET name = excluded.name",
            ),
            empty: table.sql("TRUNCATE {table}"),
        }
    }
}

impl PgProjection for Names {
    type Event = CustomerEvent;

    fn name(&self) -> &str {
        "customer-names"
    }

    fn migrations(&self) -> &[PgMigration] {
        MIGRATIONS
    }

    async fn handle(
        &mut self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope<CustomerEvent>,
    ) -> Result<(), BoxError> {
        if let CustomerEvent::Registered {
            customer_id, name, ..
        } = &envelope.event
        {
            sqlx::query(self.upsert.clone())
                .bind(customer_id)
                .bind(name)
                .execute(tx)
                .await?;
        }
        Ok(())
    }

    async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(self.empty.clone()).execute(tx).await?;
        Ok(())
    }
}

/// The tables of the store's schema in which any row's text holds `value`.
async fn tables_holding(store: &PgEventStore, value: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
    )
    .bind(store.schema().as_str())
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "events"), "{tables:?}");
    let mut holding = Vec::new();
    for table in tables {
        let found: bool = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM \"{}\".\"{table}\" t WHERE t::text LIKE '%' || $1 || '%')",
            store.schema()
        )))
        .bind(value)
        .fetch_one(store.pool())
        .await
        .unwrap();
        if found {
            holding.push(table);
        }
    }
    holding
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_table_holds_a_personal_value_but_the_read_model_until_forgotten() {
    let pg = common::fresh_store().await;
    let keys = PgKeyStore::new(&pg, LocalKeyEncryption::from_bytes([3; 32]));
    let store = Protected::new(pg.clone(), keys);
    let stream = StreamId::new("customer", "c1").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(CustomerEvent::registered(
                "c1", NAME, ADDRESS,
            ))],
        )
        .await
        .unwrap();
    let customers = Repository::<Customer, _>::new(store.clone())
        .with_snapshot_policy(SnapshotPolicy::every(1));
    customers
        .execute(
            "c1",
            CustomerCommand::Move {
                address: ADDRESS.to_owned(),
            },
        )
        .await
        .unwrap();
    let snapshots: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{}\".snapshots",
        pg.schema()
    )))
    .fetch_one(pg.pool())
    .await
    .unwrap();
    assert_eq!(snapshots, 1, "a snapshot holding the name was taken");
    let mut names = ProjectionRunner::new(
        store.clone(),
        PgTransactionalProjection::new(pg.clone(), Names::new(&pg)),
    );
    names.catch_up().await.unwrap();

    assert_eq!(tables_holding(&pg, NAME).await, ["customer_names"]);
    assert!(tables_holding(&pg, ADDRESS).await.is_empty());

    store
        .forget(&Subject::new("c1").unwrap(), "privacy desk")
        .await
        .unwrap();
    names.rebuild().await.unwrap();
    assert!(tables_holding(&pg, NAME).await.is_empty());
    let shown: String = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT name FROM \"{}\".customer_names WHERE customer_id = 'c1'",
        pg.schema()
    )))
    .fetch_one(pg.pool())
    .await
    .unwrap();
    assert_eq!(shown, FORGOTTEN_NAME);
    let loaded = customers.load("c1").await.unwrap();
    assert_eq!(loaded.state.name.as_deref(), Some(FORGOTTEN_NAME));
    assert_eq!(loaded.state.address, None);
    common::drop_schema(pg).await;
}
