//! The store's SQL, with the schema spliced in once when the store is built.
//!
//! Every value is a bind parameter; the schema name (validated, quoted) is the only text
//! put into a statement. Each text is built once, so sqlx prepares each statement once per
//! connection and reuses it.

use std::sync::Arc;

use crate::schema::SchemaName;

/// The columns every read returns, in the order `row::envelope` reads them.
pub(crate) const ENVELOPE_COLUMNS: &str = "position, transaction_id, stream_id, version, event_id, \
     event_type, schema_version, payload, correlation_id, causation_id, actor, metadata, recorded_at";

/// The partition of a row's stream among `$6` partitions: its stream id's hash, modulo
/// (kept non-negative; `abs` would overflow on the smallest hash).
const PARTITION_OF: &str = "((hashtextextended(stream_id, 0) % $6) + $6) % $6";

/// `text` as an SQL string literal. Only used on the validated schema name, which holds no
/// quote; doubling quotes keeps it right regardless.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The `LISTEN`/`NOTIFY` channel of `schema`: `es_events_<schema>`, or, where that would
/// pass PostgreSQL's 63-byte identifier limit (`NOTIFY` refuses longer names, `LISTEN`
/// cuts them short, so the two would never meet), the name's start and a hash of all of it.
fn channel(schema: &SchemaName) -> String {
    use sha2::Digest as _;
    let plain = format!("es_events_{}", schema.as_str());
    if plain.len() <= SchemaName::MAX_LEN {
        return plain;
    }
    let hash = sha2::Sha256::digest(schema.as_str().as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "es_events_{}_{hex}",
        &schema.as_str()[..SchemaName::MAX_LEN - 27]
    )
}

/// The statements of one store.
#[derive(Debug)]
pub(crate) struct Statements {
    /// Append a batch at versions `$2 + 1 ..`: `$1` stream, `$2` expected version, then the
    /// columns as arrays. Inserts nothing (and returns no rows) unless version `$2` exists
    /// (or `$2` is 0), so a writer that expects a version the stream has not reached
    /// cannot leave a gap; a writer behind the stream hits the unique (stream, version)
    /// constraint instead. Every append inserts nothing into an archived stream.
    pub(crate) append_exact: Arc<str>,
    /// Append a batch after the stream's current end, whatever it is: `$1` stream, then the
    /// columns as arrays.
    pub(crate) append_any: Arc<str>,
    /// `append_exact` for one event, with plain parameters: commands mostly emit one event,
    /// and this spares the server the arrays and the ordering.
    pub(crate) append_one_exact: Arc<str>,
    /// `append_any` for one event, with plain parameters.
    pub(crate) append_one_any: Arc<str>,
    /// The current version of stream `$1`.
    pub(crate) stream_version: Arc<str>,
    /// Up to `$3` events of stream `$1` from version `$2` on.
    pub(crate) read_stream_page: Arc<str>,
    /// The next `$5` events of the global log after `($1, $2)`, below the visibility
    /// horizon, in log order, each with whether it is of categories `$3`, types `$4` and
    /// partition `$7` of `$6` (`NULL` for all), and of a stream not archived unless `$8`.
    /// Unselected rows come without payload and metadata: they are only there so that the
    /// reader moves past them instead of scanning them again.
    pub(crate) read_log: Arc<str>,
    /// The event with id `$1`.
    pub(crate) find_event: Arc<str>,
    /// The events with ids in `$1`.
    pub(crate) find_events: Arc<str>,
    pub(crate) save_snapshot: Arc<str>,
    pub(crate) load_snapshot: Arc<str>,
    pub(crate) save_checkpoint: Arc<str>,
    pub(crate) load_checkpoint: Arc<str>,
    pub(crate) delete_checkpoint: Arc<str>,
    pub(crate) park: Arc<str>,
    pub(crate) parked: Arc<str>,
    pub(crate) unpark: Arc<str>,
    /// Takes or renews lease `$1` for owner `$2` for `$3` milliseconds; returns a row if
    /// the owner holds it now.
    pub(crate) acquire_lease: Arc<str>,
    /// Extends lease `$1` by `$3` milliseconds if owner `$2` still holds it (expired or
    /// not: an expired lease stays recorded under its holder until another takes it).
    pub(crate) renew_lease: Arc<str>,
    pub(crate) release_lease: Arc<str>,
    /// How many events of categories `$3`, types `$4` and partition `$6` of `$5`, and of
    /// streams not archived unless `$7`, follow `($1, $2)` below the horizon.
    pub(crate) count_after: Arc<str>,
    /// Whether any committed event follows `($1, $2)`: for a reader whose last read came
    /// back empty, one held back by the horizon then (an older transaction still
    /// running), or readable since. Either way it looks again soon instead of waiting for
    /// a wake-up that may have come and gone.
    pub(crate) unread_after: Arc<str>,
    /// The horizon, the count of committed events at or beyond it, the backend whose
    /// transaction is the horizon, if one still runs it (pid, database, application, state
    /// and the transaction's age), and the prepared transaction's name if it is one. Nothing
    /// is named when the horizon is the next transaction id (nothing holds it).
    pub(crate) horizon: Arc<str>,
    /// The newest committed event's position and transaction, horizon or not.
    pub(crate) head: Arc<str>,
    /// Whether transaction `$1` is below the horizon: its events are readable.
    pub(crate) readable: Arc<str>,
    /// Archiving stream `$1`, in one transaction: take the stream's lock exclusively
    /// (waiting for the appends under way), read its end (which, under SERIALIZABLE, makes
    /// an append that raced the archive a serialization failure), record the archive.
    pub(crate) archive_lock: Arc<str>,
    pub(crate) archive_read: Arc<str>,
    pub(crate) archive_stream: Arc<str>,
    /// Whether stream `$1` is archived.
    pub(crate) is_archived: Arc<str>,
    /// The notification channel of this schema.
    pub(crate) channel: Arc<str>,
}

impl Statements {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        let s = schema.quoted();
        // The columns an append names: the position (identity), the writing transaction
        // (`pg_current_xact_id()`) and the recorded time are the server's, from the
        // columns' defaults, so a role granted only these columns cannot forge them
        // (migration 0006). `recorded_at` defaults to `clock_timestamp()`, read as each row
        // is written, after the statement's snapshot showed the stream's previous event
        // committed: so recorded times never go backwards along a stream, which loads "as
        // of a time" rely on.
        let insert = format!(
            "INSERT INTO {s}.events \
                 (stream_id, version, event_id, event_type, schema_version, payload, \
                  correlation_id, causation_id, actor, metadata)"
        );
        // The batch's columns as arrays, from parameter `$first` on.
        let unnest = |first: u8| {
            let p: Vec<String> = (first..first + 8).map(|n| format!("${n}")).collect();
            format!(
                "UNNEST({}::uuid[], {}::text[], {}::int4[], {}::jsonb[], {}::uuid[], {}::uuid[], \
                        {}::text[], {}::jsonb[]) \
                 WITH ORDINALITY AS e(id, typ, sv, pl, co, ca, ac, md, ord)",
                p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
            )
        };
        let returning = "RETURNING position, transaction_id, version, recorded_at";
        // Whether stream `$1` takes events, called once per statement (in a sub-select of
        // its own where the statement has several rows): see migration 0003 for how it
        // orders appends against archiving.
        let open = format!("{s}.es_stream_open($1)");
        // Joined to the rows a log read looks at, so that the server picks hashing the
        // archived streams or probing their index for each row, whichever is cheaper for
        // the table's size. The column is renamed to keep `stream_id` unambiguous.
        let archived_join = format!(
            "LEFT JOIN (SELECT stream_id AS archived_id FROM {s}.archived_streams) archived \
                 ON archived.archived_id = stream_id"
        );
        let not_archived = |flag: u8| format!("(${flag}::bool OR archived.archived_id IS NULL)");
        // Below it, every transaction that can write here has ended (migration 0005);
        // evaluated once per statement.
        let horizon = format!("(SELECT {s}.es_horizon())");
        let text = |sql: String| -> Arc<str> { Arc::from(sql) };
        Self {
            append_exact: text(format!(
                "{insert} \
                 SELECT $1, $2 + e.ord, e.id, e.typ, e.sv, e.pl, e.co, e.ca, e.ac, e.md \
                 FROM {}, (SELECT {open} AS open OFFSET 0) guard \
                 WHERE ($2 = 0 OR EXISTS \
                     (SELECT 1 FROM {s}.events WHERE stream_id = $1 AND version = $2)) \
                   AND guard.open \
                 ORDER BY e.ord \
                 {returning}",
                unnest(3)
            )),
            append_any: text(format!(
                "{insert} \
                 SELECT $1, cur.v + e.ord, e.id, e.typ, e.sv, e.pl, e.co, e.ca, e.ac, e.md \
                 FROM {}, \
                     (SELECT coalesce(max(version), 0) AS v, {open} AS open \
                      FROM {s}.events WHERE stream_id = $1) cur \
                 WHERE cur.open \
                 ORDER BY e.ord \
                 {returning}",
                unnest(2)
            )),
            append_one_exact: text(format!(
                "{insert} \
                 SELECT $1, $2 + 1, $3, $4, $5, $6, $7, $8, $9, $10 \
                 WHERE ($2 = 0 OR EXISTS \
                     (SELECT 1 FROM {s}.events WHERE stream_id = $1 AND version = $2)) \
                   AND {open} \
                 {returning}"
            )),
            append_one_any: text(format!(
                "{insert} \
                 SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9 \
                 FROM {s}.events WHERE stream_id = $1 \
                 HAVING {open} \
                 {returning}"
            )),
            stream_version: text(format!(
                "SELECT coalesce(max(version), 0) FROM {s}.events WHERE stream_id = $1"
            )),
            read_stream_page: text(format!(
                "SELECT {ENVELOPE_COLUMNS} FROM {s}.events \
                 WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3"
            )),
            read_log: text(format!(
                "WITH page AS ( \
                     SELECT * FROM {s}.events \
                     WHERE (transaction_id, position) > ($1::xid8, $2) \
                       AND transaction_id < {horizon} \
                     ORDER BY transaction_id, position LIMIT $5), \
                 marked AS ( \
                     SELECT page.*, \
                         ($3::text[] IS NULL OR split_part(stream_id, '-', 1) = ANY($3)) \
                         AND ($4::text[] IS NULL OR event_type = ANY($4)) \
                         AND ($6::int8 IS NULL OR {PARTITION_OF} = $7) \
                         AND {} AS selected \
                     FROM page {archived_join}) \
                 SELECT position, transaction_id, stream_id, version, event_id, event_type, \
                     schema_version, CASE WHEN selected THEN payload END, correlation_id, \
                     causation_id, actor, CASE WHEN selected THEN metadata END, recorded_at, \
                     selected \
                 FROM marked ORDER BY transaction_id, position",
                not_archived(8)
            )),
            find_event: text(format!(
                "SELECT {ENVELOPE_COLUMNS} FROM {s}.events WHERE event_id = $1"
            )),
            find_events: text(format!(
                "SELECT {ENVELOPE_COLUMNS} FROM {s}.events WHERE event_id = ANY($1) ORDER BY position"
            )),
            save_snapshot: text(format!(
                "INSERT INTO {s}.snapshots AS old (stream_id, version, schema_version, state, taken_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (stream_id) DO UPDATE \
                 SET version = EXCLUDED.version, schema_version = EXCLUDED.schema_version, \
                     state = EXCLUDED.state, taken_at = EXCLUDED.taken_at \
                 WHERE old.version <= EXCLUDED.version"
            )),
            load_snapshot: text(format!(
                "SELECT version, schema_version, state, taken_at FROM {s}.snapshots WHERE stream_id = $1"
            )),
            save_checkpoint: text(format!(
                "INSERT INTO {s}.checkpoints (name, position_major, position_minor) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE \
                 SET position_major = EXCLUDED.position_major, \
                     position_minor = EXCLUDED.position_minor, updated_at = now()"
            )),
            load_checkpoint: text(format!(
                "SELECT position_major, position_minor FROM {s}.checkpoints WHERE name = $1"
            )),
            delete_checkpoint: text(format!("DELETE FROM {s}.checkpoints WHERE name = $1")),
            park: text(format!(
                "INSERT INTO {s}.parked_events (projection, event_id, stream_id, version, \
                     position_major, position_minor, event_type, error, attempts, parked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (projection, event_id) DO UPDATE \
                 SET error = EXCLUDED.error, attempts = EXCLUDED.attempts, \
                     parked_at = EXCLUDED.parked_at"
            )),
            parked: text(format!(
                "SELECT event_id, stream_id, version, position_major, position_minor, event_type, \
                     error, attempts, parked_at \
                 FROM {s}.parked_events WHERE projection = $1 \
                 ORDER BY position_major, position_minor"
            )),
            unpark: text(format!(
                "DELETE FROM {s}.parked_events WHERE projection = $1 AND event_id = $2"
            )),
            acquire_lease: text(format!(
                "INSERT INTO {s}.leases AS held (name, owner, expires_at) \
                 VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
                 ON CONFLICT (name) DO UPDATE \
                 SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at \
                 WHERE held.owner = EXCLUDED.owner OR held.expires_at <= now() \
                 RETURNING owner"
            )),
            renew_lease: text(format!(
                "UPDATE {s}.leases SET expires_at = now() + $3 * interval '1 millisecond' \
                 WHERE name = $1 AND owner = $2 RETURNING owner"
            )),
            release_lease: text(format!(
                "DELETE FROM {s}.leases WHERE name = $1 AND owner = $2"
            )),
            // Ordered and limited so that it is one step of an index scan: an EXISTS with a
            // horizon condition ran as a sequential scan (250 ms on 1M events).
            unread_after: text(format!(
                "SELECT coalesce((SELECT true FROM {s}.events \
                   WHERE (transaction_id, position) > ($1::xid8, $2) \
                   ORDER BY transaction_id, position LIMIT 1), false)"
            )),
            count_after: text(format!(
                "SELECT count(*) FROM {s}.events {archived_join} \
                 WHERE (transaction_id, position) > ($1::xid8, $2) \
                   AND transaction_id < {horizon} \
                   AND ($3::text[] IS NULL OR split_part(stream_id, '-', 1) = ANY($3)) \
                   AND ($4::text[] IS NULL OR event_type = ANY($4)) \
                   AND ($5::int8 IS NULL OR {} = $6) \
                   AND {}",
                PARTITION_OF.replace("$6", "$5"),
                not_archived(7)
            )),
            archive_lock: text(format!(
                "SELECT pg_advisory_xact_lock(hashtextextended({} || $1, 0))",
                quote_literal(&format!("{s}."))
            )),
            archive_read: text(format!(
                "SELECT coalesce(max(version), 0) FROM {s}.events WHERE stream_id = $1"
            )),
            archive_stream: text(format!(
                "INSERT INTO {s}.archived_streams (stream_id) VALUES ($1) \
                 ON CONFLICT (stream_id) DO NOTHING"
            )),
            is_archived: text(format!(
                "SELECT EXISTS (SELECT 1 FROM {s}.archived_streams WHERE stream_id = $1)"
            )),
            horizon: text(format!(
                "WITH h AS (SELECT {horizon} AS horizon, \
                               pg_snapshot_xmax(pg_current_snapshot()) AS next) \
                 SELECT h.horizon::text, \
                     (SELECT count(*) FROM {s}.events WHERE transaction_id >= h.horizon), \
                     holder.pid, holder.datname::text, holder.application_name, holder.state, \
                     (now() - holder.xact_start)::text, \
                     (SELECT gid FROM pg_prepared_xacts \
                      WHERE h.horizon < h.next AND transaction = h.horizon::xid) \
                 FROM h LEFT JOIN LATERAL \
                     (SELECT pid, datname, application_name, state, xact_start \
                      FROM pg_stat_activity \
                      WHERE h.horizon < h.next AND backend_xid = h.horizon::xid LIMIT 1) holder \
                     ON true"
            )),
            readable: text(format!("SELECT $1::xid8 < {horizon}")),
            head: text(format!(
                "SELECT position, transaction_id FROM {s}.events \
                 ORDER BY transaction_id DESC, position DESC LIMIT 1"
            )),
            channel: text(channel(schema)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_fit_postgres_identifiers_and_stay_apart() {
        let short = SchemaName::new("es").unwrap();
        assert_eq!(channel(&short), "es_events_es");
        let long_a = SchemaName::new(&format!("{}a", "x".repeat(62))).unwrap();
        let long_b = SchemaName::new(&format!("{}b", "x".repeat(62))).unwrap();
        for schema in [&long_a, &long_b] {
            assert_eq!(channel(schema).len(), SchemaName::MAX_LEN, "{schema}");
        }
        assert_ne!(channel(&long_a), channel(&long_b));
        let fits = SchemaName::new(&"y".repeat(53)).unwrap();
        assert_eq!(channel(&fits), format!("es_events_{}", "y".repeat(53)));
    }
}
