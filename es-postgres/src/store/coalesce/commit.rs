//! Running a batch: one shared statement (in autocommit, or in a transaction when an
//! append has several events), each append's rows apportioned back to it, and the
//! fallbacks (a batch of one, a refused or partial batch, a lost reply).

// The committer's types and the store's helpers, as the parent module has them: this is
// the second half of one mechanism, split for length.
#[allow(
    clippy::wildcard_imports,
    reason = "the other half of the parent module"
)]
use super::*;

/// Runs `batch` and tells each append its outcome, in a span that tells its size.
pub(super) async fn commit(inner: Arc<Inner>, batch: Vec<Request>) {
    let events: usize = batch.iter().map(|r| r.batch.ids.len()).sum();
    let span = tracing::debug_span!("coalesced_commit", appends = batch.len(), events);
    commit_in_span(inner, batch).instrument(span).await;
}

/// [`commit`], in its span.
async fn commit_in_span(inner: Arc<Inner>, mut batch: Vec<Request>) {
    if batch.len() == 1 {
        return alone(inner, batch.pop()).await;
    }
    // One lock order for every committer of every process (see the statement).
    batch.sort_by(|a, b| a.stream.as_str().cmp(b.stream.as_str()));
    let outcomes = match shared(&inner, &batch).await {
        Shared::Committed(mut stored) => {
            inner.wakeups.appended();
            batch
                .iter()
                .map(|_| {
                    stored
                        .pop_front()
                        .flatten()
                        .map_or(Outcome::Alone, Outcome::Stored)
                })
                .collect()
        }
        Shared::Nothing => batch.iter().map(|_| Outcome::Alone).collect(),
        Shared::Unknown(error, stored) => batch
            .iter()
            .zip(stored)
            .map(|(request, stored)| {
                if stored {
                    Outcome::Failed(
                        store_error("append", clone_error(&error))
                            .with_context(format!("stream `{}` (coalesced)", request.stream)),
                    )
                } else {
                    Outcome::Alone
                }
            })
            .collect::<Vec<_>>(),
    };
    for (request, outcome) in batch.into_iter().zip(outcomes) {
        // A caller that went away has nobody to tell.
        let _ = request.reply.send(outcome);
    }
}

/// A batch of one: the normal path's single statement, in autocommit, so that a lone
/// writer pays no `BEGIN` and `COMMIT` round trips. It either inserts every row or none
/// (it fails on a taken version or id, atomically).
async fn alone(inner: Arc<Inner>, request: Option<Request>) {
    let Some(request) = request else { return };
    let store = PgEventStore {
        inner: Arc::clone(&inner),
    };
    let expected = match request.expected {
        None => ExpectedVersion::Any,
        Some(0) => ExpectedVersion::NoStream,
        Some(version) => {
            ExpectedVersion::Exact(es_core::Version::new(u64::try_from(version).unwrap_or(0)))
        }
    };
    let (stream, batch) = (&request.stream, &request.batch);
    let (store, inner) = (&store, &*inner);
    let inserted = statement!(inner, |c| store.insert_on(c, stream, expected, batch)).await;
    let outcome = match inserted {
        Ok(rows) if rows.len() == batch.ids.len() => {
            inner.wakeups.appended();
            Outcome::Stored(rows)
        }
        // Refused: the normal path inserts again and explains it.
        Ok(rows) if rows.is_empty() => Outcome::Alone,
        Ok(rows) => Outcome::Failed(StoreError::new(
            "append",
            format!(
                "inserted {} rows for {} events",
                rows.len(),
                batch.ids.len()
            ),
        )),
        // Refused by the server (a lost race, a taken id), or never sent (no connection
        // came free): nothing is stored.
        Err(error) if refused(&error) => {
            alone_after(&error, "the statement of a batch of one");
            Outcome::Alone
        }
        // No reply, or an error that may have come after the commit: it may be stored.
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "a coalesced append of one may or may not be stored"
            );
            Outcome::Failed(store_error("append", error))
        }
    };
    let _ = request.reply.send(outcome);
}

/// How a shared transaction ended.
enum Shared {
    /// Committed: each append's rows, in the batch's order (`None`: it inserted none).
    Committed(VecDeque<Option<Vec<PgRow>>>),
    /// Nothing is stored (rolled back, or never begun).
    Nothing,
    /// The commit's reply was lost; for each append, whether it had rows in it.
    Unknown(sqlx::Error, Vec<bool>),
}

/// Runs the batch's statement, and commits it if every append got all of its rows or
/// none.
///
/// A batch of single-event appends runs as one statement in autocommit: one round trip,
/// as a lone append. It needs no chance to roll back, because an append of one row gets
/// all of it or none, never a part. A batch with a larger append runs in a transaction,
/// which it rolls back if one of them got only a part.
async fn shared(inner: &Inner, batch: &[Request]) -> Shared {
    if batch.iter().all(|r| r.batch.ids.len() == 1) {
        return autocommit(inner, batch).await;
    }
    let deadline = inner.reply_timeout;
    // Before `COMMIT` is sent, every failure leaves nothing stored: an uncommitted
    // transaction is rolled back, by the server if not by us.
    let mut tx = match within(deadline, PgTx::begin(&inner.pool)).await {
        Ok(tx) => tx,
        Err(error) => {
            alone_after(&error, "begin");
            return Shared::Nothing;
        }
    };
    let rows = match within(deadline, insert(inner, &mut tx, batch)).await {
        Ok(rows) => rows,
        // A deadlock with another process's batch, a serialization failure under a
        // stricter isolation, a lost connection: nothing is stored, and each append
        // alone meets (and explains) whatever it meets.
        Err(error) => {
            alone_after(&error, "the coalesced statement");
            let _ = within(deadline, tx.rollback()).await;
            return Shared::Nothing;
        }
    };
    let Some(stored) = apportion(batch, rows) else {
        // Expected now and then: another writer took some of an append's versions.
        tracing::debug!(
            "an append of the batch got only some of its rows: rolled back, each runs alone"
        );
        let _ = within(deadline, tx.rollback()).await;
        return Shared::Nothing;
    };
    if stored.iter().all(Option::is_none) {
        let _ = within(deadline, tx.rollback()).await;
        return Shared::Nothing;
    }
    match within(deadline, tx.commit()).await {
        Ok(()) => Shared::Committed(stored.into()),
        // The server refused the commit (a serialization failure under a stricter
        // isolation, a deferred constraint): the transaction is gone.
        Err(error) if refused(&error) => {
            alone_after(&error, "commit");
            Shared::Nothing
        }
        // No reply, or an error that may have come after the commit took effect (the
        // server ending the session, say).
        Err(error) => {
            unknown_after(&error, "commit");
            Shared::Unknown(error, stored.iter().map(Option::is_some).collect())
        }
    }
}

/// [`shared`] for a batch of single-event appends.
async fn autocommit(inner: &Inner, batch: &[Request]) -> Shared {
    match statement!(inner, |c| insert(inner, c, batch)).await {
        Ok(rows) => match apportion(batch, rows) {
            Some(stored) => Shared::Committed(stored.into()),
            // Cannot be (one row per append, of the batch's streams), and it committed:
            // say so rather than guess which.
            None => {
                let error = sqlx::Error::Protocol(
                    "rows the coalesced statement cannot have returned".into(),
                );
                unknown_after(&error, "the coalesced statement (autocommit)");
                Shared::Unknown(error, vec![true; batch.len()])
            }
        },
        Err(error) if refused(&error) => {
            alone_after(&error, "the coalesced statement (autocommit)");
            Shared::Nothing
        }
        // No reply, or an error that may have come after the commit: any append of it
        // may be stored.
        Err(error) => {
            unknown_after(&error, "the coalesced statement (autocommit)");
            Shared::Unknown(error, vec![true; batch.len()])
        }
    }
}

/// Each append's rows (`None` for none); `None` if an append got some but not all of its
/// rows, or a row names a stream not in the batch, which the transaction must not keep.
fn apportion(batch: &[Request], rows: Vec<PgRow>) -> Option<Vec<Option<Vec<PgRow>>>> {
    let mut stored: Vec<Vec<PgRow>> = batch.iter().map(|_| Vec::new()).collect();
    for row in rows {
        let stream: &str = row.try_get("stream_id").ok()?;
        // The batch is sorted by stream, and its streams are distinct.
        let index = batch
            .binary_search_by(|r| r.stream.as_str().cmp(stream))
            .ok()?;
        stored[index].push(row);
    }
    batch
        .iter()
        .zip(stored)
        .map(|(request, rows)| match rows.len() {
            0 => Some(None),
            n if n == request.batch.ids.len() => Some(Some(rows)),
            _ => None,
        })
        .collect()
}

/// The batch's statement: the appends' streams and expected versions, and every event's
/// append, place and columns, flattened.
async fn insert(
    inner: &Inner,
    connection: &mut PgConnection,
    batch: &[Request],
) -> Result<Vec<PgRow>, sqlx::Error> {
    let streams: Vec<&str> = batch.iter().map(|r| r.stream.as_str()).collect();
    let expected: Vec<Option<i64>> = batch.iter().map(|r| r.expected).collect();
    let events: usize = batch.iter().map(|r| r.batch.ids.len()).sum();
    let mut appends = Vec::with_capacity(events);
    let mut places = Vec::with_capacity(events);
    let mut all = Batch::empty();
    for (index, request) in batch.iter().enumerate() {
        let b = &request.batch;
        for place in 0..b.ids.len() {
            appends.push(index as i64 + 1);
            places.push(place as i64 + 1);
        }
        all.ids.extend_from_slice(&b.ids);
        all.types.extend_from_slice(&b.types);
        all.schema_versions.extend_from_slice(&b.schema_versions);
        all.payloads.extend_from_slice(&b.payloads);
        all.correlation_ids.extend_from_slice(&b.correlation_ids);
        all.causation_ids.extend_from_slice(&b.causation_ids);
        all.actors.extend_from_slice(&b.actors);
        all.user_metadata.extend_from_slice(&b.user_metadata);
        all.traceparents.extend_from_slice(&b.traceparents);
        all.tags.extend_from_slice(&b.tags);
    }
    sqlx::query(inner.sql.append_coalesced.clone())
        .bind(&streams)
        .bind(&expected)
        .bind(&appends)
        .bind(&places)
        .bind(&all.ids)
        .bind(&all.types)
        .bind(&all.schema_versions)
        .bind(&all.payloads)
        .bind(&all.correlation_ids)
        .bind(&all.causation_ids)
        .bind(&all.actors)
        .bind(&all.user_metadata)
        .bind(&all.traceparents)
        .bind(&all.tags)
        .fetch_all(connection)
        .await
}

/// Whether `error`, the failure of a step that commits (`COMMIT`, or a statement in
/// autocommit), says for sure that nothing was committed: no connection came free to send
/// it on, or the server refused it, as a serialization failure or deadlock victim (40001,
/// 40P01) or for a constraint (class 23), which abort the transaction before it commits.
///
/// Anything else leaves the outcome unknown: no reply, a lost connection, and any other
/// server error, above all a FATAL one (the server ending the session, class 08 or 57P,
/// such as 57P01 at an administrator's shutdown), which may be sent after the commit took
/// effect.
fn refused(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut => true,
        // sqlx tells constraint violations by their kind (from the SQLSTATE, in one
        // place); everything else by its code, in the crate's one module for them.
        sqlx::Error::Database(database) => {
            !matches!(database.kind(), sqlx::error::ErrorKind::Other)
                || is_serialization_failure(error)
        }
        _ => false,
    }
}

/// Logs why a batch's appends run alone after `step` failed with `error`, which stored
/// nothing: at debug for what batches meet now and then (a serialization failure or
/// deadlock with another batch, a constraint, no connection free), at warn for anything
/// else. The error's message names the statement's failure, never a value of it.
fn alone_after(error: &sqlx::Error, step: &'static str) {
    if refused(error) {
        tracing::debug!(
            error = error as &dyn std::error::Error,
            step,
            "coalesced batch failed: its appends run alone"
        );
    } else {
        tracing::warn!(
            error = error as &dyn std::error::Error,
            step,
            "coalesced batch failed: its appends run alone"
        );
    }
}

/// Logs that `step` of a batch failed with `error` in a way that leaves its appends
/// neither stored nor refused for sure: they fail, as an append whose reply was lost.
fn unknown_after(error: &sqlx::Error, step: &'static str) {
    tracing::warn!(
        error = error as &dyn std::error::Error,
        step,
        "coalesced batch may or may not be stored: its appends fail transiently"
    );
}

/// A copy of `error` good enough for the several appends one lost reply concerns: its
/// kind (what callers act on) and its message.
fn clone_error(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        other => sqlx::Error::Io(std::io::Error::other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database error with SQLSTATE `code` and sqlx's kind for it, as the server and
    /// sqlx would report it.
    #[derive(Debug, thiserror::Error)]
    #[error("server error {code}")]
    struct ServerError {
        code: &'static str,
        kind: fn() -> sqlx::error::ErrorKind,
    }

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }

        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.code.into())
        }

        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }

        fn kind(&self) -> sqlx::error::ErrorKind {
            (self.kind)()
        }
    }

    fn server(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError {
            code,
            kind: || sqlx::error::ErrorKind::Other,
        }))
    }

    fn constraint(code: &'static str, kind: fn() -> sqlx::error::ErrorKind) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError { code, kind }))
    }

    #[test]
    fn only_refusals_and_unsent_statements_say_nothing_was_committed() {
        let refusals = [
            ("serialization failure", server("40001")),
            ("deadlock", server("40P01")),
            (
                "unique violation",
                constraint("23505", || sqlx::error::ErrorKind::UniqueViolation),
            ),
            (
                "check violation",
                constraint("23514", || sqlx::error::ErrorKind::CheckViolation),
            ),
            ("no connection came free", sqlx::Error::PoolTimedOut),
        ];
        for (what, error) in refusals {
            assert!(refused(&error), "{what}");
        }
        // Each may come after the commit took effect.
        let unknown = [
            ("admin shutdown", server("57P01")),
            ("crash shutdown", server("57P02")),
            ("connection failure", server("08006")),
            ("connection exception", server("08000")),
            ("internal error", server("XX000")),
            ("no reply", no_reply(std::time::Duration::from_secs(1))),
            (
                "lost connection",
                sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            ),
        ];
        for (what, error) in unknown {
            assert!(!refused(&error), "{what}");
        }
    }
}
