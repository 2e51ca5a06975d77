//! The store's SQL: one file per statement in this folder, with `{schema}` where the
//! schema goes, read into the binary and completed once when a store is built.
//!
//! Every value is a bind parameter; the schema name (validated, quoted) is the only text put
//! into a statement, here and nowhere else (the migrations too go through [`migration`]),
//! which is why this is the one place that asserts the statements safe for sqlx. Each text
//! is built once, so sqlx prepares each statement once per connection and reuses it. What
//! each statement does and binds is said at the top of its file.

use std::sync::Arc;

use sqlx::{AssertSqlSafe, SqlSafeStr as _, SqlStr};

use crate::schema::PgSchemaName;

/// Declares the statements, one field per `sql/<name>.sql` file.
macro_rules! statements {
    ($($name:ident),* $(,)?) => {
        /// The statements of one store, completed with its schema.
        #[derive(Debug)]
        pub(crate) struct Statements {
            $(
                #[doc = concat!("`sql/", stringify!($name), ".sql`.")]
                pub(crate) $name: SqlStr,
            )*
            /// The notification channel of this schema.
            pub(crate) channel: Arc<str>,
        }

        impl Statements {
            pub(crate) fn new(schema: &PgSchemaName) -> Self {
                let quoted = schema.quoted();
                Self {
                    $(
                        $name: complete(
                            include_str!(concat!(stringify!($name), ".sql")),
                            &quoted,
                        ),
                    )*
                    channel: Arc::from(channel(schema)),
                }
            }

            /// Every statement, by name (for tests).
            #[cfg(test)]
            fn all(&self) -> Vec<(&'static str, &SqlStr)> {
                vec![$((stringify!($name), &self.$name)),*]
            }
        }
    };
}

statements! {
    append_exact,
    append_any,
    append_one_exact,
    append_one_any,
    append_if,
    own_events,
    stream_version,
    read_stream_page,
    load_start,
    load_page,
    read_log,
    read_query_tagged,
    read_query_scan,
    find_event,
    find_events,
    refusal,
    save_snapshot,
    load_snapshot,
    save_checkpoint,
    load_checkpoint,
    delete_checkpoint,
    park,
    parked,
    unpark,
    acquire_lease,
    renew_lease,
    release_lease,
    count_after,
    unread_after,
    horizon,
    notify,
    head,
    readable,
    archive_lock,
    archive_read,
    archive_stream,
    is_archived,
    projection_reset,
    checkpoint_advance,
    checkpoint_start,
    migrations_recorded,
    migration_record,
    migration_checksum,
    transaction_ids,
    grant_application,
    admin_migrations_table,
    admin_schema_version,
    admin_streams,
    admin_projections,
    admin_parked_names,
    admin_readable_head,
    read_model_exists,
    read_model_setup,
    read_model_recorded,
    read_model_record,
    key_lookup,
    key_insert,
    key_by_id,
    key_forget,
    key_forgotten,
}

/// `text` with the schema in place.
fn complete(text: &str, quoted_schema: &str) -> SqlStr {
    AssertSqlSafe(text.replace("{schema}", quoted_schema)).into_sql_str()
}

/// A migration's text (or the migrations table's setup) for `schema`: `{schema}` quoted,
/// and `{schema_name}` bare, where a migration needs the name as a value (`format('%I')`).
/// The bare name is safe there for the same reason the quoted one is: it is a validated
/// plain identifier, with no quote of either kind.
pub(crate) fn migration(text: &str, schema: &PgSchemaName) -> SqlStr {
    complete(
        &text.replace("{schema_name}", schema.as_str()),
        &schema.quoted(),
    )
}

/// The `LISTEN`/`NOTIFY` channel of `schema`: `es_events_<schema>`, or, where that would
/// pass PostgreSQL's 63-byte identifier limit (`NOTIFY` refuses longer names, `LISTEN`
/// cuts them short, so the two would never meet), the name's start and a hash of all of it.
fn channel(schema: &PgSchemaName) -> String {
    use sha2::Digest as _;
    let plain = format!("es_events_{}", schema.as_str());
    if plain.len() <= PgSchemaName::MAX_LEN {
        return plain;
    }
    let hash = sha2::Sha256::digest(schema.as_str().as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "es_events_{}_{hex}",
        &schema.as_str()[..PgSchemaName::MAX_LEN - 27]
    )
}

#[cfg(test)]
mod catalogue;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_is_complete() {
        let statements = Statements::new(&PgSchemaName::new("es").unwrap());
        for (name, sql) in statements.all() {
            assert!(!sql.as_str().contains('{'), "{name} keeps a placeholder");
            assert!(
                sql.as_str().contains("\"es\"."),
                "{name} names no table of the schema"
            );
        }
    }

    #[test]
    fn channels_fit_postgres_identifiers_and_stay_apart() {
        let short = PgSchemaName::new("es").unwrap();
        assert_eq!(channel(&short), "es_events_es");
        let long_a = PgSchemaName::new(&format!("{}a", "x".repeat(62))).unwrap();
        let long_b = PgSchemaName::new(&format!("{}b", "x".repeat(62))).unwrap();
        for schema in [&long_a, &long_b] {
            assert_eq!(channel(schema).len(), PgSchemaName::MAX_LEN, "{schema}");
        }
        assert_ne!(channel(&long_a), channel(&long_b));
        let fits = PgSchemaName::new(&"y".repeat(53)).unwrap();
        assert_eq!(channel(&fits), format!("es_events_{}", "y".repeat(53)));
    }
}
