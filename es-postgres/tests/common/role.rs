//! A login role of its own for one test, for what the application role may and may not do
//! (`#[path = "common/role.rs"] mod role;` in the tests that use it, beside `mod common;`).

use es_postgres::PgEventStore;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

/// A login role of its own for one test, dropped by [`Role::drop_with`].
pub(crate) struct Role {
    pub(crate) name: String,
}

impl Role {
    pub(crate) async fn create(owner: &PgEventStore) -> Self {
        let name = format!("es_test_app_{}", Uuid::new_v4().simple());
        sqlx::query(AssertSqlSafe(format!("CREATE ROLE \"{name}\" LOGIN")))
            .execute(owner.pool())
            .await
            .expect("create the test's role");
        Self { name }
    }

    /// The store as this role sees it, on a small pool of its own.
    pub(crate) fn store(&self, owner: &PgEventStore) -> PgEventStore {
        let options = es_testkit::postgres::connect_options("es-test-role").username(&self.name);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_lazy_with(options);
        PgEventStore::builder(pool)
            .schema(owner.schema().as_str())
            .expect("the owner's schema name is valid")
            .build()
    }

    /// Drops the owner's schema, then the role and what it owns.
    pub(crate) async fn drop_with(self, owner: PgEventStore) {
        let pool = owner.pool().clone();
        crate::common::drop_schema(owner).await;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP OWNED BY \"{0}\"; DROP ROLE \"{0}\"",
            self.name
        )))
        .execute(&pool)
        .await
        .expect("drop the test's role");
    }
}
