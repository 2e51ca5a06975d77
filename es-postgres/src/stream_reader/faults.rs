//! Failures a test plans for a stream's page reads, raised by the server itself so that
//! they go through the same classification as real ones.
//!
//! Only in the crate's own tests: the resume after a partial hand-over cannot be reached
//! from outside, since the server fails a read of committed rows only under conditions a
//! test cannot time (a conflict with recovery on a standby, say).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use es_core::StreamId;
use sqlx::PgConnection;

use crate::schema::PgSchemaName;

/// For each stream of each schema, in order: after how many rows of a page attempt to
/// fail, and with what SQLSTATE. Keyed so that tests running side by side, each on a
/// schema of its own, do not meet each other's.
type Plans = HashMap<(String, StreamId), VecDeque<(usize, &'static str)>>;

static PLANS: Mutex<Option<Plans>> = Mutex::new(None);

/// Plans `failures` for the page reads of `stream` in `schema`, after any still planned:
/// each fails the first page attempt that reaches its row count.
pub(crate) fn plan(schema: &PgSchemaName, stream: &StreamId, failures: &[(usize, &'static str)]) {
    let mut plans = PLANS.lock().unwrap_or_else(PoisonError::into_inner);
    plans
        .get_or_insert_default()
        .entry(key(schema, stream))
        .or_default()
        .extend(failures.iter().copied());
}

/// How many planned failures of `stream` in `schema` have not been raised.
pub(crate) fn pending(schema: &PgSchemaName, stream: &StreamId) -> usize {
    let plans = PLANS.lock().unwrap_or_else(PoisonError::into_inner);
    plans
        .as_ref()
        .and_then(|plans| plans.get(&key(schema, stream)))
        .map_or(0, VecDeque::len)
}

/// The SQLSTATE to fail with now, when a page attempt of `stream` in `schema` has read
/// `rows` rows.
pub(super) fn due(schema: &PgSchemaName, stream: &StreamId, rows: usize) -> Option<&'static str> {
    let mut plans = PLANS.lock().unwrap_or_else(PoisonError::into_inner);
    let planned = plans.as_mut()?.get_mut(&key(schema, stream))?;
    match planned.front() {
        Some(&(at, code)) if at == rows => {
            planned.pop_front();
            Some(code)
        }
        _ => None,
    }
}

fn key(schema: &PgSchemaName, stream: &StreamId) -> (String, StreamId) {
    (schema.as_str().to_owned(), stream.clone())
}

/// The error the server raises with SQLSTATE `code`.
pub(super) async fn raise(connection: &mut PgConnection, code: &'static str) -> sqlx::Error {
    let statement =
        format!("DO $$ BEGIN RAISE EXCEPTION 'planned fault' USING ERRCODE = '{code}'; END $$");
    match sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(connection)
        .await
    {
        Err(error) => error,
        Ok(_) => sqlx::Error::Protocol(format!("the server did not raise {code}")),
    }
}
