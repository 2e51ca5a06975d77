//! `es tail`: follows the live log.

use es_core::{EventFilter, EventStore as _, Position, RawEvent};
use es_postgres::PgEventStore;
use futures_util::StreamExt as _;

use super::{EventRecord, time};
use crate::cli::{TailArgs, TailFrom};
use crate::error::CliError;
use crate::output::Output;

pub(crate) async fn run(
    out: &Output,
    store: &PgEventStore,
    args: &TailArgs,
) -> Result<(), CliError> {
    let mut filter = EventFilter::all();
    if !args.categories.is_empty() {
        filter = filter.with_categories(args.categories.iter().cloned());
    }
    if !args.event_types.is_empty() {
        filter = filter.with_event_types(args.event_types.iter().cloned());
    }
    let after = match args.from {
        TailFrom::Start => Position::START,
        // After the newest event readable now, not the newest committed: an event of a
        // transaction still open sorts after the one, and may sort before the other.
        TailFrom::End => store
            .admin()
            .readable_head()
            .await?
            .unwrap_or(Position::START),
        TailFrom::After(position) => position,
    };
    if args.limit == Some(0) {
        return Ok(());
    }
    let events = store.subscribe::<RawEvent>(after, filter);
    futures_util::pin_mut!(events);
    // Every wait has its end: the timeout if given, Ctrl-C in any case.
    let deadline = async {
        match args.timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut shown = 0_u64;
    loop {
        let envelope = tokio::select! {
            next = events.next() => match next {
                Some(envelope) => envelope?,
                None => return Ok(()),
            },
            () = &mut deadline => return Ok(()),
            _ = &mut interrupted => return Ok(()),
        };
        let record = EventRecord::from(envelope);
        if out.json {
            out.print_json_line(&record)?;
        } else {
            out.line(&format!(
                "{}  {}  {} v{}  {}  {}",
                time(record.recorded_at),
                record.position,
                record.stream_id,
                record.version,
                record.event_type,
                record.payload
            ))?;
        }
        shown += 1;
        if args.limit.is_some_and(|limit| shown >= limit) {
            return Ok(());
        }
    }
}
