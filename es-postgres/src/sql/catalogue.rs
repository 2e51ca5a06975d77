//! The statement catalogue against a real schema: every statement prepares on a schema
//! the migrations made (a typo or a renamed column fails here, not in production), and
//! every row struct finds its columns, by name, in the statements that feed it.
//!
//! Needs a PostgreSQL server: `DATABASE_URL`, or the local one.

use std::collections::BTreeMap;

use sqlx::postgres::PgPoolOptions;
use sqlx::{Column as _, Executor as _, Statement as _};

use super::Statements;
use crate::migrate::Applied;
use crate::row::{AppendedRow, EventRow, LoadRow, PositionRow};
use crate::schema::PgSchemaName;

/// Which columns each reader of rows takes, by name, from which statements.
const FEEDS: &[(&str, &[&str], &[&str])] = &[
    (
        "EventRow",
        EventRow::COLUMNS,
        &[
            "read_stream_page",
            "read_log",
            "read_query_tagged",
            "read_query_scan",
            "find_event",
            "find_events",
        ],
    ),
    ("LoadRow", LoadRow::COLUMNS, &["load_start", "load_page"]),
    ("classify", &["stored", "archived", "version"], &["refusal"]),
    (
        "load_events' start",
        &["archived", "taken_at"],
        &["load_start"],
    ),
    (
        "AppendedRow",
        AppendedRow::COLUMNS,
        &[
            "append_exact",
            "append_any",
            "append_one_exact",
            "append_one_any",
            "append_if",
        ],
    ),
    (
        "PositionRow",
        PositionRow::COLUMNS,
        &["head", "admin_readable_head"],
    ),
    ("the log reader's filter", &["selected"], &["read_log"]),
    ("Applied", Applied::COLUMNS, &["migrations_recorded"]),
    (
        "read_model::Recorded",
        crate::read_model::Recorded::COLUMNS,
        &["read_model_recorded"],
    ),
    ("read_model::recorded", &["present"], &["read_model_exists"]),
    (
        "load_snapshot",
        &["version", "schema_version", "state", "taken_at"],
        &["load_snapshot"],
    ),
    (
        "load_checkpoint",
        &["position_major", "position_minor"],
        &["load_checkpoint"],
    ),
    (
        "parked",
        &[
            "event_id",
            "stream_id",
            "version",
            "position_major",
            "position_minor",
            "event_type",
            "error",
            "attempts",
            "parked_at",
        ],
        &["parked"],
    ),
    (
        "horizon::read",
        &[
            "horizon",
            "waiting",
            "pid",
            "database",
            "application",
            "state",
            "age",
            "prepared",
        ],
        &["horizon"],
    ),
    (
        "admin::streams",
        crate::admin::STREAM_COLUMNS,
        &["admin_streams"],
    ),
    (
        "admin::projections",
        crate::admin::PROJECTION_COLUMNS,
        &["admin_projections"],
    ),
    (
        "keys::lookup",
        &["key_id", "wrapped", "forgotten"],
        &["key_lookup"],
    ),
    ("keys::insert", &["key_id"], &["key_insert"]),
    ("keys::by_id", &["wrapped"], &["key_by_id"]),
    (
        "keys::forgetting",
        &["forgotten_by", "forgotten_at"],
        &["key_forget", "key_forgotten"],
    ),
    (
        "check_transaction_ids",
        &["newest", "next_id"],
        &["transaction_ids"],
    ),
];

#[tokio::test]
async fn every_statement_prepares_and_feeds_its_rows() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("no PostgreSQL at {url}: {e}"));
    let name = format!("es_catalogue_{}", uuid::Uuid::now_v7().simple());
    let schema = PgSchemaName::new(&name).expect("a valid schema name");
    let statements = Statements::new(&schema);
    crate::migrate::run(&pool, &schema, &statements)
        .await
        .expect("migrate");
    // The read models' record is made with their first migration, not by the store's.
    sqlx::raw_sql(statements.read_model_setup.clone())
        .execute(&pool)
        .await
        .expect("the read models' record");

    let mut columns = BTreeMap::new();
    let mut failures = Vec::new();
    for (name, sql) in statements.all() {
        match pool.prepare(sql.clone()).await {
            Ok(prepared) => {
                let names: Vec<String> = prepared
                    .columns()
                    .iter()
                    .map(|c| c.name().to_owned())
                    .collect();
                columns.insert(name, names);
            }
            Err(error) => failures.push(format!("{name}: {error}")),
        }
    }
    sqlx::raw_sql(super::migration("DROP SCHEMA {schema} CASCADE", &schema))
        .execute(&pool)
        .await
        .expect("drop the schema");
    assert!(
        failures.is_empty(),
        "statements that do not prepare:\n{}",
        failures.join("\n")
    );

    for (reader, wanted, statements) in FEEDS {
        for statement in *statements {
            let Some(has) = columns.get(statement) else {
                panic!("{reader} is fed by `{statement}`, which is no statement");
            };
            for column in *wanted {
                assert!(
                    has.iter().any(|c| c == column),
                    "{reader} reads `{column}`, which `{statement}` does not select (it selects {has:?})"
                );
            }
            // One name, one column: a duplicate would make reading by name ambiguous.
            for column in has {
                assert_eq!(
                    has.iter().filter(|c| *c == column).count(),
                    1,
                    "`{statement}` selects `{column}` twice"
                );
            }
        }
    }
}
