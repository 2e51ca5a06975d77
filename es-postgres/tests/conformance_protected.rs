//! The whole store conformance suite, unchanged, on PostgreSQL behind
//! `es_core::personal::Protected` with the PostgreSQL key store: the decorator that
//! encrypts personal fields keeps every behaviour of the store it wraps. Each test in a
//! schema of its own.

mod common;

use es_core::personal::{LocalKeyEncryption, Protected};
use es_postgres::{PgEventStore, PgKeyStore};

type ProtectedStore = Protected<PgEventStore, PgKeyStore>;

async fn protected() -> ProtectedStore {
    let store = common::fresh_store().await;
    let keys = PgKeyStore::new(&store, LocalKeyEncryption::from_bytes([7; 32]));
    Protected::new(store, keys)
}

async fn teardown(store: ProtectedStore) {
    common::drop_schema(store.inner().clone()).await;
}

es_testkit::conformance_tests!(protected(), teardown = teardown);

es_testkit::personal_contract!(protected(), teardown = teardown);
