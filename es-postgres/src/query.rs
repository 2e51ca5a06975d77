//! Queries by event type and tag ([`es_core::Query`]) as the statements bind them, and
//! [`QueryReader`], which reads the global log by query (`EventStore::read_query`).
//!
//! A query whose every item has a tag is answered from the GIN index on tags (migration
//! 0008): the events carrying any of the items' tags are the candidates, each then checked
//! against the items exactly. An item without tags (types only, or [`Query::all`]) can
//! select events that carry no tag, which the index does not hold: such a query scans the
//! log after the position, in order.

use std::collections::{BTreeSet, VecDeque};
use std::marker::PhantomData;
use std::sync::Arc;

use es_core::{DomainEvent, EventEnvelope, Position, Query, ReadError};
use futures_core::Stream;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;

use crate::checkout::Checkout;
use crate::error::{SERIALIZATION_RETRIES, is_serialization_failure};
use crate::inner::Inner;
use crate::reader::{Page, Prefetch, next_row};
use crate::row;
use crate::xid::Xid8;

/// A query as the statements bind it.
#[derive(Debug, Clone)]
pub(crate) struct QueryParameters {
    /// The items, as `[{"types": [...], "tags": [...]}]`.
    pub(crate) items: Value,
    /// Every item's tags together, when every item has one: the index finds the
    /// candidates. `None` when some item has none.
    pub(crate) any_tags: Option<Vec<String>>,
    /// Every item's types together, when every item names one (a scan keeps only these);
    /// `None` when some item reads any type.
    pub(crate) any_types: Option<Vec<String>>,
}

impl QueryParameters {
    /// The parameters of `query`; `None` for a query that selects nothing.
    pub(crate) fn new(query: &Query) -> Option<Self> {
        if query.is_none() {
            return None;
        }
        let items = query.items();
        let mut tags = BTreeSet::new();
        let mut types = BTreeSet::new();
        let (mut untagged, mut untyped) = (false, false);
        let mut encoded = Vec::with_capacity(items.len());
        for item in items {
            untagged |= item.tags().is_empty();
            untyped |= item.types().len() == 0;
            tags.extend(item.tags().iter().map(|tag| tag.as_str().to_owned()));
            types.extend(item.types().map(str::to_owned));
            encoded.push(json!({
                "types": item.types().collect::<Vec<_>>(),
                "tags": item.tags().iter().map(es_core::Tag::as_str).collect::<Vec<_>>(),
            }));
        }
        Some(Self {
            items: Value::Array(encoded),
            any_tags: (!untagged).then(|| tags.into_iter().collect()),
            any_types: (!untyped).then(|| types.into_iter().collect()),
        })
    }
}

/// Reads the global log by query after a position, below the horizon, a page at a time
/// (the next page read while the caller works through the current one), and ends there:
/// every position it delivers is a resume point, as for a log read.
pub(crate) struct QueryReader<E> {
    inner: Arc<Inner>,
    query: Arc<QueryParameters>,
    /// The last position read: (transaction id, sequence number).
    after: (u64, i64),
    buffer: VecDeque<PgRow>,
    prefetch: Prefetch,
    finished: bool,
    event: PhantomData<fn() -> E>,
}

impl<E: DomainEvent> QueryReader<E> {
    /// A reader of `query` after `after`; `None` if the query selects nothing.
    pub(crate) fn new(inner: Arc<Inner>, query: &Query, after: Position) -> Option<Self> {
        let (transaction, sequence) = after.parts();
        Some(Self {
            inner,
            query: Arc::new(QueryParameters::new(query)?),
            after: (transaction, i64::try_from(sequence).unwrap_or(i64::MAX)),
            buffer: VecDeque::new(),
            prefetch: Prefetch::none(),
            finished: false,
            event: PhantomData,
        })
    }

    /// The page after `after`, each row within the reply deadline, run again if the
    /// server aborts it as a serialization failure.
    fn page(&self, after: (u64, i64)) -> impl Future<Output = Page> + Send + 'static {
        let (inner, query) = (Arc::clone(&self.inner), Arc::clone(&self.query));
        async move {
            let mut aborted = 0;
            loop {
                let mut checkout = Checkout::take(&inner.pool).await?;
                let statement = match &query.any_tags {
                    Some(tags) => sqlx::query(inner.sql.read_query_tagged.clone())
                        .bind(Xid8(after.0))
                        .bind(after.1)
                        .bind(tags),
                    None => sqlx::query(inner.sql.read_query_scan.clone())
                        .bind(Xid8(after.0))
                        .bind(after.1)
                        .bind(query.any_types.as_deref()),
                };
                let mut rows = statement
                    .bind(&query.items)
                    .bind(inner.page_size)
                    .fetch(&mut *checkout);
                let mut page = Vec::new();
                let mut failed = None;
                while let Some(row) = next_row(&mut rows, inner.reply_timeout).await {
                    match row {
                        Ok(row) => page.push(row),
                        Err(error) => {
                            failed = Some(error);
                            break;
                        }
                    }
                }
                drop(rows);
                let Some(error) = failed else {
                    checkout.finish();
                    return Ok(page);
                };
                checkout.finish_after(&error);
                if is_serialization_failure(&error) && aborted < SERIALIZATION_RETRIES {
                    aborted += 1;
                    continue;
                }
                return Err(error.into());
            }
        }
    }

    async fn next(&mut self) -> Option<Result<EventEnvelope<E>, ReadError>> {
        loop {
            if let Some(row) = self.buffer.pop_front() {
                let envelope = row::envelope::<E>(&row, None);
                if envelope.is_err() {
                    // A stream of results ends at its first error.
                    self.finish();
                }
                return Some(envelope);
            }
            if self.finished {
                return None;
            }
            let page = match self.prefetch.take().await {
                Some(page) => page,
                None => self.page(self.after).await,
            };
            let rows = match page {
                Ok(rows) => rows,
                Err(error) => {
                    self.finish();
                    let (transaction, sequence) = self.after;
                    return Some(Err(error
                        .into_store_error()
                        .with_context(format!("the log after position {transaction}:{sequence}"))
                        .into()));
                }
            };
            if let Some(last) = rows.last() {
                match row::position_of(last) {
                    Ok(position) => {
                        let (transaction, sequence) = position.parts();
                        self.after = (transaction, i64::try_from(sequence).unwrap_or(i64::MAX));
                    }
                    Err(error) => {
                        self.finish();
                        return Some(Err(error));
                    }
                }
            }
            if rows.len() as i64 >= self.inner.page_size {
                self.prefetch.start(self.page(self.after));
            } else {
                // The log is read up to the horizon.
                self.finished = true;
            }
            self.buffer.extend(rows);
        }
    }

    fn finish(&mut self) {
        self.finished = true;
        self.buffer.clear();
        self.prefetch = Prefetch::none();
    }

    pub(crate) fn into_stream(
        self,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        futures_util::stream::unfold(self, |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use es_core::{QueryItem, Tag};
    use sqlx::postgres::PgPoolOptions;
    use sqlx::{AssertSqlSafe, Executor as _};

    use crate::schema::PgSchemaName;
    use crate::sql::Statements;

    #[test]
    fn only_queries_whose_items_all_have_tags_use_the_index() {
        let course = Tag::pair("course", "c1").unwrap();
        let tagged = Query::from(QueryItem::new().with_tag(course.clone())).or(QueryItem::new()
            .with_types(["A"])
            .with_tag(Tag::new("x").unwrap()));
        let parameters = QueryParameters::new(&tagged).unwrap();
        assert_eq!(
            parameters.any_tags.as_deref(),
            Some(&["course:c1".to_owned(), "x".to_owned()][..])
        );
        assert_eq!(parameters.any_types, None);
        let typed = Query::from(QueryItem::new().with_types(["B", "A"]))
            .or(QueryItem::new().with_tag(course));
        let parameters = QueryParameters::new(&typed).unwrap();
        assert_eq!(parameters.any_tags, None);
        assert_eq!(parameters.any_types, None);
        let types_only =
            QueryParameters::new(&QueryItem::new().with_types(["B", "A"]).into()).unwrap();
        assert_eq!(
            types_only.any_types.as_deref(),
            Some(&["A".to_owned(), "B".to_owned()][..])
        );
        assert!(QueryParameters::new(&Query::none()).is_none());
        assert_eq!(
            QueryParameters::new(&Query::all()).unwrap().items,
            json!([{ "types": [], "tags": [] }])
        );
    }

    /// The query read of a tagged query, planned for a table of many tagged events, reads
    /// the GIN index, with the parameters' values (a custom plan) and without (the generic
    /// plan its function, `es_read_query_tagged` of migration 0009, is made to use).
    #[tokio::test]
    async fn tagged_query_reads_plan_the_tags_index() {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("no PostgreSQL at {url}: {e}"));
        let name = format!("es_plan_{}", uuid::Uuid::now_v7().simple());
        let schema = PgSchemaName::new(&name).expect("a valid schema name");
        let statements = Statements::new(&schema);
        crate::migrate::run(&pool, &schema, &statements)
            .await
            .expect("migrate");
        let quoted = schema.quoted();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "INSERT INTO {quoted}.events (stream_id, version, event_id, event_type, schema_version, \
             payload, metadata, tags) \
             SELECT 's-' || n, 1, gen_random_uuid(), 'StudentSubscribed', 1, '{{}}', '{{}}', \
                    ARRAY['course:' || (n % 500), 'student:' || n] \
             FROM generate_series(1, 20000) AS n; \
             ANALYZE {quoted}.events"
        )))
        .execute(&pool)
        .await
        .expect("the events");
        // The function's query, as the server stores it, with its parameters numbered.
        let body: String = sqlx::query_scalar(
            "SELECT prosrc FROM pg_proc WHERE proname = 'es_read_query_tagged' \
             AND pronamespace = $1::regnamespace",
        )
        .bind(schema.quoted())
        .fetch_one(&pool)
        .await
        .expect("the function's body");
        let start = body.find("RETURN QUERY").expect("RETURN QUERY") + "RETURN QUERY".len();
        let end = body.rfind(';').expect("the end of the query");
        let mut statement = body[start..end].to_owned();
        for (n, parameter) in [
            "p_after_transaction",
            "p_after_position",
            "p_any_tags",
            "p_items",
            "p_limit",
        ]
        .into_iter()
        .enumerate()
        {
            statement = statement.replace(parameter, &format!("${}", n + 1));
        }
        let mut connection = pool.acquire().await.unwrap();
        connection
            .execute(AssertSqlSafe(format!(
                "PREPARE q(xid8, bigint, text[], jsonb, bigint) AS {statement}"
            )))
            .await
            .expect("prepare");
        let items = r#"[{"types": ["StudentSubscribed"], "tags": ["course:42"]}]"#;
        let mut plans = Vec::new();
        for mode in ["force_custom_plan", "force_generic_plan"] {
            sqlx::raw_sql(AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
                .execute(&mut *connection)
                .await
                .unwrap();
            let lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
                "EXPLAIN EXECUTE q('0', 0, ARRAY['course:42'], '{items}', 2000)"
            )))
            .fetch_all(&mut *connection)
            .await
            .expect("explain");
            plans.push((mode, lines));
        }
        drop(connection);
        sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {quoted} CASCADE")))
            .execute(&pool)
            .await
            .expect("drop the schema");
        for (plan, lines) in plans {
            assert!(
                lines.iter().any(|line| line.contains("events_tags_idx")),
                "the {plan} plan does not use the tags index:\n{}",
                lines.join("\n")
            );
            // Intersected with a scan of the primary key for the position, it would read
            // most of the log.
            assert!(
                !lines.iter().any(|line| line.contains("BitmapAnd")),
                "the {plan} plan scans the primary key for the position:\n{}",
                lines.join("\n")
            );
        }
    }
}
