//! The handlers: one route per command, the reads of an order, the read model, and the
//! live log as server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use es_core::telemetry::TRACEPARENT_HEADER;
use es_core::{AsOf, CommandContext, EventEnvelope, Position, RawEvent, StatusHandle, Version};
use futures_util::{Stream, StreamExt as _};
use orders::OrderCommand;
use tokio::sync::watch;
use uuid::Uuid;

use crate::api::{
    AsOfQuery, CommandAccepted, ErrorBody, EventsQuery, ListQuery, OrderList, OrderView, Pay,
    PlaceOrder, Prepare, RecordedEvent, Ship, Status,
};
use crate::backend::{HistoryError, Orders};
use crate::consistency::wait_for_checkpoint;
use crate::correlation::CorrelationId;
use crate::error::ApiError;
use crate::read_model::ReadModel;

/// The header that makes a command idempotent: a UUID the client picks per command.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The orders.
    pub orders: Orders,
    /// The read model.
    pub read_model: ReadModel,
    /// Its runner's status, for read-your-writes.
    pub projection: StatusHandle,
    /// How long `?after=` waits for the read model.
    pub read_wait: Duration,
    /// Whether a command's `traceparent` header goes into its events
    /// ([`Config::trust_traceparent`](crate::Config::trust_traceparent)).
    pub trust_traceparent: bool,
    /// Turns `true` when the service shuts down: live event streams end then.
    pub shutdown: watch::Receiver<bool>,
}

/// The shared state as handlers take it.
pub type Shared = State<Arc<AppState>>;

/// The idempotency key, if the request has one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| Uuid::parse_str(text).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!("the `{IDEMPOTENCY_KEY}` header must be a UUID"))
        })
}

/// The request's `traceparent` header, if the service trusts it and it is text. Whether
/// it is a valid trace context is es-core's to say
/// ([`CommandContext::with_traceparent`] drops one that is not): a bad one is ignored,
/// never refused, because tracing must not fail a command.
fn traceparent(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if !state.trust_traceparent {
        return None;
    }
    let value = headers.get(TRACEPARENT_HEADER)?.to_str().ok()?;
    Some(value.to_owned())
}

/// Executes `command` on order `id` with the request's correlation id, and its trace
/// context if trusted.
async fn execute(
    state: &AppState,
    id: &str,
    command: OrderCommand,
    correlation: CorrelationId,
    headers: &HeaderMap,
) -> Result<Json<CommandAccepted>, ApiError> {
    let mut context = CommandContext::new().with_correlation_id(correlation.0);
    if let Some(key) = idempotency_key(headers)? {
        context = context.with_command_id(key);
    }
    if let Some(traceparent) = traceparent(state, headers) {
        context = context.with_traceparent(traceparent);
    }
    let outcome = state
        .orders
        .execute(id, command, context)
        .await
        .map_err(|error| ApiError::command(id, error))?;
    Ok(Json(CommandAccepted {
        order_id: id.to_owned(),
        version: outcome.version.get(),
        position: outcome.position().map(|p| p.to_string()),
        events: outcome
            .events
            .iter()
            .map(|e| e.event_type().to_owned())
            .collect(),
        duplicate: outcome.duplicate,
        correlation_id: outcome
            .events
            .first()
            .and_then(|e| e.metadata.correlation_id)
            .unwrap_or(correlation.0),
    }))
}

/// Place a new order.
#[utoipa::path(
    post, path = "/orders/{id}/place", tag = "commands",
    params(("id" = String, Path, description = "The order's id, chosen by the client"),
           ("idempotency-key" = Option<String>, Header, description = "A UUID for this one command: sending it again records it once"),
           ("x-correlation-id" = Option<String>, Header, description = "A UUID tying the events to a flow; a new one if absent"),
           ("traceparent" = Option<String>, Header, description = "A W3C trace context the events carry, if the service trusts it (`--trust-traceparent`); an invalid one is ignored")),
    request_body = PlaceOrder,
    responses((status = 200, description = "Placed", body = CommandAccepted),
              (status = 400, description = "Malformed request", body = ErrorBody),
              (status = 409, description = "Concurrent writers outlasted the retries", body = ErrorBody),
              (status = 422, description = "Already placed, no items, or a bad item", body = ErrorBody),
              (status = 503, description = "The store is unavailable", body = ErrorBody)),
)]
pub async fn place(
    State(state): Shared,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<PlaceOrder>, JsonRejection>,
) -> Result<Json<CommandAccepted>, ApiError> {
    let (Path(id), Json(body)) = (id?, body?);
    let command = OrderCommand::Place {
        customer_id: body.customer_id,
        customer: body.customer,
        address: body.address,
        items: body.items.into_iter().map(Into::into).collect(),
    };
    execute(&state, &id, command, correlation, &headers).await
}

/// Record a payment.
#[utoipa::path(
    post, path = "/orders/{id}/pay", tag = "commands",
    params(("id" = String, Path, description = "The order's id"),
           ("idempotency-key" = Option<String>, Header, description = "A UUID for this one command"),
           ("x-correlation-id" = Option<String>, Header, description = "A UUID tying the events to a flow"),
           ("traceparent" = Option<String>, Header, description = "A W3C trace context the events carry, if trusted")),
    request_body = Pay,
    responses((status = 200, description = "Paid", body = CommandAccepted),
              (status = 400, description = "Malformed request", body = ErrorBody),
              (status = 404, description = "No such order", body = ErrorBody),
              (status = 409, description = "Concurrent writers outlasted the retries", body = ErrorBody),
              (status = 422, description = "Not positive, too much, or already paid", body = ErrorBody),
              (status = 503, description = "The store is unavailable", body = ErrorBody)),
)]
pub async fn pay(
    State(state): Shared,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Pay>, JsonRejection>,
) -> Result<Json<CommandAccepted>, ApiError> {
    let (Path(id), Json(body)) = (id?, body?);
    let command = OrderCommand::ReceivePayment {
        amount_cents: body.amount_cents,
        reference: body.reference,
    };
    execute(&state, &id, command, correlation, &headers).await
}

/// Start preparing a fully paid order.
#[utoipa::path(
    post, path = "/orders/{id}/prepare", tag = "commands",
    params(("id" = String, Path, description = "The order's id"),
           ("idempotency-key" = Option<String>, Header, description = "A UUID for this one command"),
           ("x-correlation-id" = Option<String>, Header, description = "A UUID tying the events to a flow"),
           ("traceparent" = Option<String>, Header, description = "A W3C trace context the events carry, if trusted")),
    request_body = Prepare,
    responses((status = 200, description = "Being prepared", body = CommandAccepted),
              (status = 400, description = "Malformed request", body = ErrorBody),
              (status = 404, description = "No such order", body = ErrorBody),
              (status = 409, description = "Concurrent writers outlasted the retries", body = ErrorBody),
              (status = 422, description = "Not paid, or already prepared", body = ErrorBody),
              (status = 503, description = "The store is unavailable", body = ErrorBody)),
)]
pub async fn prepare(
    State(state): Shared,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Prepare>, JsonRejection>,
) -> Result<Json<CommandAccepted>, ApiError> {
    let (Path(id), Json(body)) = (id?, body?);
    let command = OrderCommand::StartPreparing {
        warehouse: body.warehouse,
    };
    execute(&state, &id, command, correlation, &headers).await
}

/// Ship an order that is being prepared.
#[utoipa::path(
    post, path = "/orders/{id}/ship", tag = "commands",
    params(("id" = String, Path, description = "The order's id"),
           ("idempotency-key" = Option<String>, Header, description = "A UUID for this one command"),
           ("x-correlation-id" = Option<String>, Header, description = "A UUID tying the events to a flow"),
           ("traceparent" = Option<String>, Header, description = "A W3C trace context the events carry, if trusted")),
    request_body = Ship,
    responses((status = 200, description = "Shipped", body = CommandAccepted),
              (status = 400, description = "Malformed request", body = ErrorBody),
              (status = 404, description = "No such order", body = ErrorBody),
              (status = 409, description = "Concurrent writers outlasted the retries", body = ErrorBody),
              (status = 422, description = "Not paid, not prepared, or already shipped", body = ErrorBody),
              (status = 503, description = "The store is unavailable", body = ErrorBody)),
)]
pub async fn ship(
    State(state): Shared,
    Extension(correlation): Extension<CorrelationId>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<Ship>, JsonRejection>,
) -> Result<Json<CommandAccepted>, ApiError> {
    let (Path(id), Json(body)) = (id?, body?);
    let command = OrderCommand::Ship {
        carrier: body.carrier,
        tracking_number: body.tracking_number,
    };
    execute(&state, &id, command, correlation, &headers).await
}

/// The view of order `id` as of `as_of`, 404 if it had not been placed by then.
async fn view(state: &AppState, id: &str, as_of: AsOf) -> Result<Json<OrderView>, ApiError> {
    let loaded = state
        .orders
        .load(id, as_of)
        .await
        .map_err(|error| ApiError::load(id, error))?;
    OrderView::of(id, &loaded)
        .map(Json)
        .ok_or_else(|| ApiError::unknown_order(id))
}

/// An order's current state.
#[utoipa::path(
    get, path = "/orders/{id}", tag = "reads",
    params(("id" = String, Path, description = "The order's id")),
    responses((status = 200, description = "The order", body = OrderView),
              (status = 400, description = "Malformed id", body = ErrorBody),
              (status = 404, description = "No such order", body = ErrorBody),
              (status = 503, description = "The store is unavailable", body = ErrorBody)),
)]
pub async fn get_order(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<OrderView>, ApiError> {
    let Path(id) = id?;
    view(&state, &id, AsOf::Latest).await
}

/// An order's state as of a past version or time.
#[utoipa::path(
    get, path = "/orders/{id}/as-of", tag = "reads",
    params(("id" = String, Path, description = "The order's id"), AsOfQuery),
    responses((status = 200, description = "The order as it was", body = OrderView),
              (status = 400, description = "Neither or both of `version` and `time`", body = ErrorBody),
              (status = 404, description = "Not placed by then", body = ErrorBody),
              (status = 503, description = "The store is unavailable", body = ErrorBody)),
)]
pub async fn get_order_as_of(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
) -> Result<Json<OrderView>, ApiError> {
    let (Path(id), Query(query)) = (id?, query?);
    let as_of = match (query.version, query.time) {
        (Some(version), None) => AsOf::Version(Version::new(version)),
        (None, Some(time)) => AsOf::Time(time),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `version` (a number) and `time` (RFC 3339)",
            ));
        }
    };
    view(&state, &id, as_of).await
}

/// Every event of an order, as stored.
#[utoipa::path(
    get, path = "/orders/{id}/history", tag = "reads",
    params(("id" = String, Path, description = "The order's id")),
    responses((status = 200, description = "Its events, in order", body = [RecordedEvent]),
              (status = 400, description = "Malformed id", body = ErrorBody),
              (status = 404, description = "No such order", body = ErrorBody),
              (status = 503, description = "The store is unavailable", body = ErrorBody)),
)]
pub async fn history(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<RecordedEvent>>, ApiError> {
    let Path(id) = id?;
    let events = match state.orders.history(&id).await {
        Ok(events) => events,
        Err(HistoryError::InvalidId(error)) => {
            return Err(ApiError::bad_request(format!(
                "`{}` is not a valid order id: {error}",
                id.escape_debug()
            )));
        }
        Err(HistoryError::Read(error)) => return Err(ApiError::read(&id, &error)),
    };
    if events.is_empty() {
        return Err(ApiError::unknown_order(&id));
    }
    Ok(Json(events.into_iter().map(RecordedEvent::from).collect()))
}

/// The most orders one read of the read model returns.
const MAX_LIMIT: u32 = 1000;

/// Orders by status, from the read model.
#[utoipa::path(
    get, path = "/orders", tag = "reads",
    params(ListQuery),
    responses((status = 200, description = "The orders", body = OrderList),
              (status = 400, description = "Unknown status or malformed position", body = ErrorBody),
              (status = 503, description = "The read model is unavailable", body = ErrorBody),
              (status = 504, description = "The read model did not reach `after` in time", body = ErrorBody)),
)]
pub async fn list_orders(
    State(state): Shared,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<OrderList>, ApiError> {
    let Query(query) = query?;
    let status = match query.status.as_deref() {
        None => None,
        Some(name) => Some(Status::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`{}` is not a status: use placed, paid, preparing or shipped",
                name.escape_debug()
            ))
        })?),
    };
    let limit = query.limit.unwrap_or(100).min(MAX_LIMIT);
    let mut checkpoint = state.projection.get().position;
    if let Some(after) = query.after.as_deref() {
        let after = parse_position(after, "after")?;
        checkpoint =
            wait_for_checkpoint(&state.orders, &state.projection, after, state.read_wait).await?;
    }
    let orders = state
        .read_model
        .list(status, limit)
        .await
        .map_err(|error| {
            if error.is_transient() {
                ApiError::store_failed("", &error)
            } else {
                ApiError::internal("", &error)
            }
        })?;
    Ok(Json(OrderList {
        orders,
        checkpoint: checkpoint.map(|p| p.to_string()),
    }))
}

fn parse_position(text: &str, what: &str) -> Result<Position, ApiError> {
    text.parse().map_err(|error| {
        ApiError::bad_request(format!(
            "`{what}`: {error}; give a position as a response or event gave it"
        ))
    })
}

/// The live log of order events, as server-sent events.
#[utoipa::path(
    get, path = "/events", tag = "reads",
    params(EventsQuery,
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position: the id of the last event received")),
    responses((status = 200, description = "A stream of `text/event-stream` events: each one's `event` is the event type, its `id` the position, its `data` a RecordedEvent",
               content_type = "text/event-stream", body = RecordedEvent),
              (status = 400, description = "Malformed position", body = ErrorBody)),
)]
pub async fn events(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query?;
    let after = match headers.get("last-event-id") {
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| ApiError::bad_request("`Last-Event-ID` is not text"))?;
            parse_position(text, "Last-Event-ID")?
        }
        None => match query.after.as_deref() {
            Some(after) => parse_position(after, "after")?,
            None => Position::START,
        },
    };
    let mut shutdown = state.shutdown.clone();
    let stopping = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    let stream = state
        .orders
        .subscribe(after)
        .scan(false, |failed, item| {
            // The stream ends after reporting an error: the client reconnects with
            // `Last-Event-ID` and goes on where it was.
            if *failed {
                return std::future::ready(None);
            }
            let event = match item {
                Ok(envelope) => live_event(envelope),
                Err(error) => {
                    *failed = true;
                    tracing::warn!(error = &error as &dyn std::error::Error, "live log failed");
                    Event::default().event("error").data(error.to_string())
                }
            };
            std::future::ready(Some(Ok(event)))
        })
        .take_until(stopping);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The `event` field of an event whose stored type cannot be one: SSE's default type, the
/// one `EventSource.onmessage` receives.
const UNNAMED_EVENT: &str = "message";

/// The SSE `event` field for an event of type `event_type`: the type itself, or
/// [`UNNAMED_EVENT`] if it holds a line break, which would end the field (axum panics on
/// one rather than write it). es-rs checks the types it appends, but rows written by
/// anything else could hold anything; the event's `data` still carries its type as stored.
fn event_name(event_type: &str) -> &str {
    if event_type.contains(['\n', '\r']) {
        UNNAMED_EVENT
    } else {
        event_type
    }
}

/// One event of the live log as an SSE event: its position as the `id`, its type as the
/// `event` (see [`event_name`]), the [`RecordedEvent`] as JSON `data`.
fn live_event(envelope: EventEnvelope<RawEvent>) -> Event {
    let id = envelope.position.to_string();
    let event = Event::default()
        .id(id)
        .event(event_name(&envelope.event.event_type));
    event
        .json_data(RecordedEvent::from(envelope))
        .unwrap_or_else(|_| {
            Event::default()
                .event("error")
                .data("cannot encode the event")
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, reason = "tests: a failed step is a failed test")]

    use axum::response::IntoResponse as _;
    use es_core::{Metadata, StreamId};

    use super::*;

    /// `envelope` as the bytes a client of `/events` receives.
    async fn sent(envelope: EventEnvelope<RawEvent>) -> String {
        let stream = futures_util::stream::iter([Ok::<_, Infallible>(live_event(envelope))]);
        let body = Sse::new(stream).into_response().into_body();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .expect("the body");
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    }

    fn envelope(event_type: &str) -> EventEnvelope<RawEvent> {
        EventEnvelope {
            event_id: Uuid::nil(),
            stream_id: StreamId::new("order", "o-1").expect("a stream id"),
            version: Version::new(1),
            position: Position::from_parts(7, 3),
            recorded_at: chrono::DateTime::UNIX_EPOCH,
            metadata: Metadata::default(),
            event: RawEvent::new(event_type, 1, serde_json::json!({ "customer": "ada" })),
        }
    }

    #[tokio::test]
    async fn an_event_type_is_the_event_name() {
        let text = sent(envelope("OrderNew")).await;
        assert!(text.contains("event: OrderNew\n"), "{text}");
        assert!(text.contains("id: 7:3\n"), "{text}");
    }

    #[tokio::test]
    async fn an_event_type_with_a_line_break_is_sent_unnamed() {
        for event_type in ["Order\nNew", "Order\rNew", "Order\r\nNew\n"] {
            let text = sent(envelope(event_type)).await;
            assert!(text.contains("event: message\n"), "{text}");
            let data = text
                .lines()
                .find_map(|line| line.strip_prefix("data: "))
                .expect("a data line");
            let data: serde_json::Value = serde_json::from_str(data).expect("JSON");
            assert_eq!(data["event_type"], event_type, "the data keeps the type");
        }
    }
}
