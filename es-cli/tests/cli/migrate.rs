//! `es migrate` and `es migrate --check`: exit codes before and after.

use es_postgres::PgEventStore;
use es_testkit::postgres::{drop_schema, fresh_store};
use serde_json::json;

use super::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_check_fails_until_the_schema_is_migrated() {
    let store = fresh_store().await;
    let schema = format!("{}_m", store.schema());
    let unmigrated = PgEventStore::builder(store.pool().clone())
        .schema(&schema)
        .unwrap()
        .build();

    // The version this build needs, from the library: a new migration must not break this.
    let latest = unmigrated.admin().schema_status().await.unwrap().latest;
    es(&unmigrated, &["migrate", "--check"]).await.fails(
        3,
        &format!("behind the {latest} this es needs: run `es migrate`"),
    );
    let behind = es(&unmigrated, &["migrate", "--check", "--json"]).await;
    assert_eq!(behind.code, 3);
    assert_eq!(behind.json()["current"], false);
    es(&unmigrated, &["streams"])
        .await
        .fails(3, "it was never migrated");

    let migrated = es(&unmigrated, &["migrate"]).await.ok();
    assert!(
        migrated.stdout.contains(&format!(
            "migrated schema `{schema}` from version 0 to {latest}"
        )),
        "{migrated:?}"
    );
    let check = es(&unmigrated, &["migrate", "--check"]).await.ok();
    assert!(
        check
            .stdout
            .contains(&format!("is up to date (version {latest})")),
        "{check:?}"
    );
    let check = es(&unmigrated, &["migrate", "--check", "--json"])
        .await
        .ok();
    assert_eq!(
        check.json(),
        json!({ "schema": schema, "applied": latest, "latest": latest, "current": true })
    );
    let again = es(&unmigrated, &["migrate", "--json"]).await.ok().json();
    assert_eq!(
        (again["previous"].clone(), again["applied"].clone()),
        (json!(latest), json!(latest))
    );
    drop_schema(unmigrated).await;
    drop_schema(store).await;
}
