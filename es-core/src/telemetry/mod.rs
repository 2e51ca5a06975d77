//! What es-rs tells an observer: the names of its `tracing` spans and of its metrics, and
//! the W3C trace context (`traceparent`) that events carry from the command that recorded
//! them to the projections and process managers that handle them.
//!
//! # Spans
//!
//! | span | level | fields |
//! | --- | --- | --- |
//! | [`COMMAND_SPAN`] | info | `aggregate`, `stream`, `command_id`; when done `outcome` (one of [`OUTCOMES`]) and `retries` |
//! | [`DECISION_SPAN`] | info | `stream`, `command_id`, `query` (types and tag keys, never tag values); when done `outcome` (one of [`OUTCOMES`]) and `retries` |
//! | [`APPEND_SPAN`] | debug | `stream`, `events`, `expected` (the expected version) |
//! | [`SUBSCRIPTION_SPAN`] | debug | `after`; its wake-ups are `trace` events |
//! | [`BATCH_SPAN`] | info | `projection`, `first`; when committed `last` and `events` |
//! | [`HANDLE_SPAN`] | debug, info with `opentelemetry` ([`PER_EVENT_LEVEL`]) | `projection`, `stream`, `version`, `position`, `event_id` |
//! | [`REACTION_SPAN`] | debug, info with `opentelemetry` ([`PER_EVENT_LEVEL`]) | `manager`, `commands` |
//!
//! # Metrics
//!
//! Recorded through the [`metrics`] facade: the library installs no recorder, so an
//! application that installs none pays next to nothing, and one that does (a Prometheus
//! exporter, say) gets [`COMMAND_DURATION`], [`COMMAND_CONFLICTS`], [`COMMAND_RETRIES`],
//! [`PROJECTION_LAG`], [`PROJECTION_BATCH_DURATION`] and [`PROJECTION_EVENTS`].
//!
//! # Trace context
//!
//! [`Metadata::traceparent`](crate::Metadata::traceparent) holds a [`TraceContext`],
//! stored and sent as a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`) in its
//! canonical form only, rebuilt from what was parsed. A caller sets it with
//! [`CommandContext::with_traceparent`](crate::CommandContext::with_traceparent) (from an
//! incoming request's header, say). With the `opentelemetry` feature, command execution
//! stores the current span's OpenTelemetry context there when none was set, and the
//! runner gives the span that handles the event that context as its parent
//! ([`set_parent`]), so that one trace runs from the command through its events to every
//! reaction. Without the feature, a traceparent set by the caller is stored and read back
//! (in canonical form), and nothing else happens. An invalid traceparent is dropped, never
//! an error; a later version's extra fields are not kept.

use std::time::Instant;

use metrics::{Key, Label};

mod trace_context;

pub use trace_context::{TraceContext, is_valid_traceparent};

/// The span of one command execution ([`Repository::execute_with`](crate::Repository::execute_with)).
pub const COMMAND_SPAN: &str = "es.command";
/// The span of one append to a stream, in each store.
pub const APPEND_SPAN: &str = "es.append";
/// The span of a decision across streams ([`Decider::execute`](crate::Decider::execute)).
pub const DECISION_SPAN: &str = "es.decision";
/// The span of a store's live subscription; its wake-ups are `trace` events within it.
pub const SUBSCRIPTION_SPAN: &str = "es.subscription";
/// The span of one batch of a projection runner: from its first event to its commit.
pub const BATCH_SPAN: &str = "es.projection.batch";
/// The span in which a projection handles one event; its parent is the event's trace
/// context when there is one (feature `opentelemetry`).
pub const HANDLE_SPAN: &str = "es.projection.handle";
/// The span of a process manager's reaction to one event, around the commands it issues.
pub const REACTION_SPAN: &str = "es.process.reaction";

/// The level of the spans made per event ([`HANDLE_SPAN`], [`REACTION_SPAN`]): `debug`, so
/// that an application logging at `info` does not format two spans per event handled, and
/// `info` with the `opentelemetry` feature, so that a trace pipeline filtered at `info`
/// still links an event's handling to the command that recorded it.
pub const PER_EVENT_LEVEL: tracing::Level = if cfg!(feature = "opentelemetry") {
    tracing::Level::INFO
} else {
    tracing::Level::DEBUG
};

/// The values of the `outcome` field of [`COMMAND_SPAN`] and label of
/// [`COMMAND_DURATION`]: the events were recorded; the command id had been executed
/// before; the command changed nothing; the aggregate rejected it; every attempt lost a
/// concurrency race; anything else failed (the store, an archived stream). An invalid
/// aggregate id fails before the command starts: it has no span and no metrics.
pub const OUTCOMES: [&str; 6] = [
    "committed",
    "duplicate",
    "unchanged",
    "rejected",
    "conflict",
    "error",
];

/// Histogram, seconds: how long a command took, from its first load to its outcome,
/// retries included. Labels `aggregate` (the aggregate type's name) and `outcome` (one of
/// [`OUTCOMES`]).
pub const COMMAND_DURATION: &str = "es_command_duration_seconds";
/// Counter: appends of a command that lost a concurrency race (another writer appended
/// first). Label `aggregate`.
pub const COMMAND_CONFLICTS: &str = "es_command_conflicts_total";
/// Counter: times a command was decided and appended again, after a conflict or a
/// transient store failure. Label `aggregate`.
pub const COMMAND_RETRIES: &str = "es_command_retries_total";
/// Gauge, events: how many events the projection's filter selects after its last
/// committed position, as the store counts them
/// ([`EventStore::count_after`](crate::EventStore::count_after): on a long log a scan, so
/// each count is cut short after 2 s, or sooner when the runner's lease is due for
/// renewal, leaving the gauge as it was). Sampled after a commit the gauge does not show yet, at most once per sample
/// interval ([`LAG_SAMPLE_INTERVAL`] by default,
/// [`with_lag_sample_interval`](crate::ProjectionRunner::with_lag_sample_interval)) and
/// never before one interval of the drive has passed (a short catch-up pays no count);
/// after a count that took `t`, not again for nine times `t` either, so that counting
/// takes at most a tenth of the runner's time. A live runner that goes idle with a commit
/// not yet shown wakes when the next sample is due: a runner that caught up shows it
/// within about one interval. The gauge is only set while the runner runs: it keeps its
/// last value once the runner stops or while it stands by (another instance holds the
/// lease). Label `projection` (the runner's key).
pub const PROJECTION_LAG: &str = "es_projection_lag";
/// Histogram, seconds: from a batch's first event to its commit. Label `projection`.
pub const PROJECTION_BATCH_DURATION: &str = "es_projection_batch_duration_seconds";
/// Counter: events a projection handled (or parked) and committed. Label `projection`.
pub const PROJECTION_EVENTS: &str = "es_projection_events_total";

/// How often at most a runner asks its store how far behind it is, for [`PROJECTION_LAG`],
/// unless set otherwise: counting costs a query, so it is not done at every commit.
pub const LAG_SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The name of the header that carries the trace context (HTTP, NATS): `traceparent`.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The traceparent of the current span: its OpenTelemetry context, with the
/// `opentelemetry` feature, if the span is recorded and has a valid one. Always `None`
/// without the feature, and cheap when no subscriber records the span.
pub fn current_traceparent() -> Option<TraceContext> {
    #[cfg(feature = "opentelemetry")]
    {
        otel::current()
    }
    #[cfg(not(feature = "opentelemetry"))]
    {
        None
    }
}

/// Makes the trace context `traceparent` the OpenTelemetry parent of `span` (feature
/// `opentelemetry`; without it, and for an absent traceparent, it does nothing). Call it before the span is entered: its children take their trace from it.
///
/// This is how the runner continues a command's trace in the span that handles one of its
/// events; a consumer of events relayed elsewhere (es-nats) does the same with the
/// `traceparent` header, parsed with [`TraceContext::parse`].
pub fn set_parent(span: &tracing::Span, traceparent: Option<TraceContext>) {
    #[cfg(feature = "opentelemetry")]
    if let Some(traceparent) = traceparent {
        otel::set_parent(span, traceparent);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, traceparent);
}

#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    pub(super) fn current() -> Option<super::TraceContext> {
        let span = tracing::Span::current();
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        let span = context.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return None;
        }
        super::TraceContext::new(
            u128::from_be_bytes(span_context.trace_id().to_bytes()),
            u64::from_be_bytes(span_context.span_id().to_bytes()),
            span_context.trace_flags().to_u8(),
        )
    }

    pub(super) fn set_parent(span: &tracing::Span, parent: super::TraceContext) {
        if span.is_disabled() {
            return;
        }
        let remote = SpanContext::new(
            TraceId::from(parent.trace_id()),
            SpanId::from(parent.span_id()),
            TraceFlags::new(parent.flags()),
            true,
            TraceState::default(),
        );
        // Fails only for a span that is closed or not recorded by OpenTelemetry: then
        // there is nothing to continue.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// How a command or a decision ended, as [`OUTCOMES`] names it: the one place that maps
/// an execution's result to a name, for commands and decisions alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It succeeded: whether as a repeat of an earlier execution, and whether it recorded
    /// nothing.
    Done { duplicate: bool, unchanged: bool },
    /// The rule rejected it.
    Rejected,
    /// Every attempt lost a race.
    Conflict,
    /// Anything else failed.
    Error,
}

impl Outcome {
    /// Its index in [`OUTCOMES`].
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Done {
                duplicate: true, ..
            } => 1,
            Self::Done {
                unchanged: true, ..
            } => 2,
            Self::Done { .. } => 0,
            Self::Rejected => 3,
            Self::Conflict => 4,
            Self::Error => 5,
        }
    }

    /// Its name, one of [`OUTCOMES`].
    pub(crate) fn name(self) -> &'static str {
        OUTCOMES[self.index()]
    }
}

/// The index in [`OUTCOMES`] of a command's outcome.
pub(crate) fn command_outcome<E, R>(
    result: &Result<crate::CommandOutcome<E>, crate::CommandError<R>>,
) -> usize {
    use crate::CommandError;
    match result {
        Ok(outcome) => Outcome::Done {
            duplicate: outcome.duplicate,
            unchanged: outcome.events.is_empty(),
        },
        Err(CommandError::Rejected { .. }) => Outcome::Rejected,
        Err(CommandError::Conflict { .. }) => Outcome::Conflict,
        Err(_) => Outcome::Error,
    }
    .index()
}

/// The metric keys of the commands of aggregate `A`, made at compile time: recording a
/// command then allocates and hashes nothing, which the `metrics` macros would do for a
/// label that is not a literal, recorder or not.
struct CommandKeys<A>(std::marker::PhantomData<A>);

/// The labels of `A`'s commands with outcome `$outcome`.
macro_rules! outcome_labels {
    ($outcome:literal) => {
        &[
            Label::from_static_parts("aggregate", A::NAME),
            Label::from_static_parts("outcome", $outcome),
        ]
    };
}

impl<A: crate::AggregateType> CommandKeys<A> {
    const COMMITTED: &'static [Label] = outcome_labels!("committed");
    const DUPLICATE: &'static [Label] = outcome_labels!("duplicate");
    const UNCHANGED: &'static [Label] = outcome_labels!("unchanged");
    const REJECTED: &'static [Label] = outcome_labels!("rejected");
    const CONFLICT: &'static [Label] = outcome_labels!("conflict");
    const ERROR: &'static [Label] = outcome_labels!("error");
    /// By outcome, in the order of [`OUTCOMES`]; behind a reference, so that a use reads
    /// the one key rather than copying them all.
    const DURATION: &'static [Key; 6] = &[
        Key::from_static_parts(COMMAND_DURATION, Self::COMMITTED),
        Key::from_static_parts(COMMAND_DURATION, Self::DUPLICATE),
        Key::from_static_parts(COMMAND_DURATION, Self::UNCHANGED),
        Key::from_static_parts(COMMAND_DURATION, Self::REJECTED),
        Key::from_static_parts(COMMAND_DURATION, Self::CONFLICT),
        Key::from_static_parts(COMMAND_DURATION, Self::ERROR),
    ];
    const AGGREGATE: &'static [Label] = &[Label::from_static_parts("aggregate", A::NAME)];
    const CONFLICTS: &'static Key = &Key::from_static_parts(COMMAND_CONFLICTS, Self::AGGREGATE);
    const RETRIES: &'static Key = &Key::from_static_parts(COMMAND_RETRIES, Self::AGGREGATE);
}

/// What the command metrics are recorded as coming from.
static COMMAND_METRICS: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The span of a command on `stream` ([`COMMAND_SPAN`]), its outcome to be recorded by
/// [`command_done`] within it.
pub(crate) fn command_span(
    aggregate: &'static str,
    stream: &crate::StreamId,
    command_id: uuid::Uuid,
) -> tracing::Span {
    tracing::info_span!(
        COMMAND_SPAN,
        aggregate,
        %stream,
        %command_id,
        outcome = tracing::field::Empty,
        retries = tracing::field::Empty,
    )
}

/// Records a finished command of aggregate `A`, within its span: the span's `outcome`
/// (the index in [`OUTCOMES`]) and `retries`, and the command metrics.
pub(crate) fn command_done<A: crate::AggregateType>(
    started: Instant,
    outcome: usize,
    retries: u32,
    conflicts: u32,
) {
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("outcome", OUTCOMES[outcome]);
        span.record("retries", retries);
    }
    let seconds = started.elapsed().as_secs_f64();
    metrics::with_recorder(|recorder| {
        recorder
            .register_histogram(&CommandKeys::<A>::DURATION[outcome], &COMMAND_METRICS)
            .record(seconds);
        if conflicts > 0 {
            recorder
                .register_counter(CommandKeys::<A>::CONFLICTS, &COMMAND_METRICS)
                .increment(u64::from(conflicts));
        }
        if retries > 0 {
            recorder
                .register_counter(CommandKeys::<A>::RETRIES, &COMMAND_METRICS)
                .increment(u64::from(retries));
        }
    });
}

/// One batch of a projection runner, from its first event to its commit.
#[derive(Debug)]
pub(crate) struct Batch {
    span: tracing::Span,
    started: Instant,
}

impl Batch {
    pub(crate) fn start(projection: &str, first: crate::Position) -> Self {
        Self {
            span: tracing::info_span!(
                BATCH_SPAN,
                projection,
                %first,
                last = tracing::field::Empty,
                events = tracing::field::Empty,
            ),
            started: Instant::now(),
        }
    }

    /// The batch's span, the parent of the spans of its events.
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The batch was committed, with `events` events up to `last`.
    pub(crate) fn committed(self, projection: &str, last: crate::Position, events: usize) {
        self.span.record("last", tracing::field::display(last));
        self.span.record("events", events);
        let projection = projection.to_owned();
        metrics::histogram!(PROJECTION_BATCH_DURATION, "projection" => projection.clone())
            .record(self.started.elapsed().as_secs_f64());
        metrics::counter!(PROJECTION_EVENTS, "projection" => projection).increment(events as u64);
    }
}

/// The span in which projection `projection` handles `envelope` ([`HANDLE_SPAN`]), a child
/// of the current span that continues the trace the event carries ([`set_parent`]): for
/// code that feeds a projection events itself, as the es-nats consumer does.
pub fn handle_span<E>(projection: &str, envelope: &crate::EventEnvelope<E>) -> tracing::Span {
    handle_span_in(projection, envelope, None)
}

/// [`handle_span`], under `batch` if given (else the current span).
pub(crate) fn handle_span_in<E>(
    projection: &str,
    envelope: &crate::EventEnvelope<E>,
    batch: Option<&tracing::Span>,
) -> tracing::Span {
    let span = match batch {
        Some(batch) => tracing::span!(
            parent: batch,
            PER_EVENT_LEVEL,
            HANDLE_SPAN,
            projection,
            stream = %envelope.stream_id,
            version = %envelope.version,
            position = %envelope.position,
            event_id = %envelope.event_id,
        ),
        None => tracing::span!(
            PER_EVENT_LEVEL,
            HANDLE_SPAN,
            projection,
            stream = %envelope.stream_id,
            version = %envelope.version,
            position = %envelope.position,
            event_id = %envelope.event_id,
        ),
    };
    set_parent(&span, envelope.metadata.traceparent);
    span
}

/// Records how many events `projection` has yet to handle.
pub(crate) fn projection_lag(projection: &str, events: u64) {
    #[allow(
        clippy::cast_precision_loss,
        reason = "a gauge is an f64; a lag beyond 2^53 events loses only precision"
    )]
    metrics::gauge!(PROJECTION_LAG, "projection" => projection.to_owned()).set(events as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_span_no_traceparent() {
        assert_eq!(current_traceparent(), None);
    }

    /// An application logging at info formats no span per event, unless it exports traces.
    #[test]
    fn the_per_event_span_is_below_info_without_opentelemetry() {
        use tracing_subscriber::layer::SubscriberExt as _;

        let envelope = crate::EventEnvelope {
            event_id: uuid::Uuid::now_v7(),
            stream_id: crate::StreamId::new("account", "1").unwrap(),
            version: crate::Version::new(1),
            position: crate::Position::from_parts(1, 0),
            recorded_at: chrono::Utc::now(),
            metadata: crate::Metadata::new(),
            event: (),
        };
        let subscriber =
            tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::INFO);
        tracing::subscriber::with_default(subscriber, || {
            let span = handle_span("deposits", &envelope);
            assert_eq!(span.is_disabled(), !cfg!(feature = "opentelemetry"));
        });
    }
}
