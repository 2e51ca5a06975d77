//! The service's request and response bodies, as JSON and in the OpenAPI document.
//!
//! They are the service's own types rather than the domain's: the HTTP contract can stay
//! put while the aggregate's fields change, and every field here is documented for the
//! document's readers.

use es_core::{EventEnvelope, Loaded, RawEvent};
use orders::{LineItem, Order, OrderStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// One line of a new order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// The product's stock-keeping unit.
    pub sku: String,
    /// How many (at least 1).
    pub quantity: u32,
    /// Price of one, in cents (not negative).
    pub unit_price_cents: i64,
}

impl From<Item> for LineItem {
    fn from(item: Item) -> Self {
        LineItem::new(&item.sku, item.quantity, item.unit_price_cents)
    }
}

impl From<&LineItem> for Item {
    fn from(item: &LineItem) -> Self {
        Self {
            sku: item.sku.clone(),
            quantity: item.quantity,
            unit_price_cents: item.unit_price_cents,
        }
    }
}

/// `POST /orders/{id}/place`: place a new order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// The shop's id of the customer; none if not given. (The orders example keeps the
    /// name and address under it, encrypted, so that they can be forgotten; this service
    /// stores its events unprotected.)
    #[serde(default)]
    pub customer_id: String,
    /// Who orders.
    pub customer: String,
    /// Where the order goes; none if not given.
    #[serde(default)]
    pub address: String,
    /// What (at least one line).
    pub items: Vec<Item>,
}

/// `POST /orders/{id}/pay`: record a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pay {
    /// How much, in cents (positive, at most what is still due).
    pub amount_cents: i64,
    /// The payment provider's reference.
    pub reference: String,
}

/// `POST /orders/{id}/prepare`: start preparing a fully paid order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Prepare {
    /// Which warehouse.
    pub warehouse: String,
}

/// `POST /orders/{id}/ship`: ship an order that is being prepared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ship {
    /// Who carries it.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// What a command recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommandAccepted {
    /// The order.
    pub order_id: String,
    /// The order's version after the command.
    pub version: u64,
    /// The global log position of the command's last event (`major:minor`): pass it as
    /// `?after=` to `GET /orders` to read the read model once it includes this command.
    /// `null` if the command recorded nothing.
    pub position: Option<String>,
    /// The types of the events the command recorded, in order.
    pub events: Vec<String>,
    /// Whether the command's id (the `idempotency-key` header) had been executed before:
    /// the events are those of that first execution, and nothing new was recorded.
    pub duplicate: bool,
    /// The correlation id the events carry.
    pub correlation_id: Uuid,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Placed, not fully paid.
    Placed,
    /// Paid in full.
    Paid,
    /// Being prepared in a warehouse.
    Preparing,
    /// On its way.
    Shipped,
}

impl Status {
    /// The status of an order in `status`, `None` for one not placed yet.
    pub fn of(status: OrderStatus) -> Option<Self> {
        match status {
            OrderStatus::Draft => None,
            OrderStatus::Placed => Some(Self::Placed),
            OrderStatus::Paid => Some(Self::Paid),
            OrderStatus::Preparing => Some(Self::Preparing),
            OrderStatus::Shipped => Some(Self::Shipped),
        }
    }

    /// The name used in JSON, in the read model's table and in `?status=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Preparing => "preparing",
            Self::Shipped => "shipped",
        }
    }

    /// The status named `name` (as [`Status::as_str`] gives it).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Placed, Self::Paid, Self::Preparing, Self::Shipped]
            .into_iter()
            .find(|status| status.as_str() == name)
    }
}

/// A shipment: who carries the order, under which tracking number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Shipment {
    /// Who carries it.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// An order's state, as its events made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    /// The order.
    pub order_id: String,
    /// How many events the state includes.
    pub version: u64,
    /// Where it is.
    pub status: Status,
    /// Who ordered.
    pub customer: String,
    /// What.
    pub items: Vec<Item>,
    /// The amount due in all, in cents.
    pub total_cents: i64,
    /// What has been paid, in cents.
    pub paid_cents: i64,
    /// What is still due, in cents.
    pub due_cents: i64,
    /// The warehouse preparing it, once preparation started.
    pub warehouse: Option<String>,
    /// The shipment, once shipped.
    pub shipment: Option<Shipment>,
}

impl OrderView {
    /// The view of a loaded order, `None` if it has not been placed (as of the load).
    pub fn of(id: &str, loaded: &Loaded<Order>) -> Option<Self> {
        let order = &loaded.state;
        Some(Self {
            order_id: id.to_owned(),
            version: loaded.version.get(),
            status: Status::of(order.status)?,
            customer: order.customer.clone(),
            items: order.items.iter().map(Item::from).collect(),
            total_cents: order.total_cents,
            paid_cents: order.paid_cents,
            due_cents: order.due_cents(),
            warehouse: order.warehouse.clone(),
            shipment: order
                .shipment
                .as_ref()
                .map(|(carrier, tracking_number)| Shipment {
                    carrier: carrier.clone(),
                    tracking_number: tracking_number.clone(),
                }),
        })
    }
}

/// One recorded event, as stored: in an order's history and on the live log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordedEvent {
    /// The event's id.
    pub event_id: Uuid,
    /// The order it belongs to.
    pub order_id: String,
    /// Its version in the order's stream (from 1).
    pub version: u64,
    /// Its global log position (`major:minor`); on the live log, also the SSE event id
    /// to resume after (`Last-Event-ID`).
    pub position: String,
    /// Its type, such as `OrderNew`.
    pub event_type: String,
    /// The schema version its payload was stored under.
    pub schema_version: u32,
    /// When the store recorded it.
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// The flow it belongs to: the `x-correlation-id` of the request that caused it.
    pub correlation_id: Option<Uuid>,
    /// What caused it: the id of the command that recorded it.
    pub causation_id: Option<Uuid>,
    /// The W3C trace context it carries: the trusted `traceparent` header of the request
    /// that caused it, if any.
    pub traceparent: Option<String>,
    /// The payload, as stored.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<EventEnvelope<RawEvent>> for RecordedEvent {
    fn from(envelope: EventEnvelope<RawEvent>) -> Self {
        Self {
            event_id: envelope.event_id,
            order_id: envelope.stream_id.id().to_owned(),
            version: envelope.version.get(),
            position: envelope.position.to_string(),
            event_type: envelope.event.event_type,
            schema_version: envelope.event.schema_version,
            recorded_at: envelope.recorded_at,
            correlation_id: envelope.metadata.correlation_id,
            causation_id: envelope.metadata.causation_id,
            traceparent: envelope
                .metadata
                .traceparent
                .map(|context| context.to_string()),
            payload: envelope.event.payload,
        }
    }
}

/// `GET /orders/{id}/as-of`: which past state. Give exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOfQuery {
    /// The state after the events up to this version.
    pub version: Option<u64>,
    /// The state after the events recorded at or before this time (RFC 3339).
    pub time: Option<chrono::DateTime<chrono::Utc>>,
}

/// `GET /orders`: which orders, and how fresh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only orders in this status (`placed`, `paid`, `preparing`, `shipped`).
    pub status: Option<String>,
    /// Read your writes: wait (a few seconds at most, then 504) until the read model
    /// includes the event at this position, as a command's response gave it.
    pub after: Option<String>,
    /// At most this many orders, by id (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// `GET /events`: where the live log starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Deliver the events after this position (`major:minor`); the `Last-Event-ID`
    /// header, which browsers send when they reconnect, takes precedence. From the start
    /// of the log if neither is given.
    pub after: Option<String>,
}

/// One order in the read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderRow {
    /// The order.
    pub order_id: String,
    /// Who ordered.
    pub customer: String,
    /// Where it is.
    pub status: Status,
    /// The amount due in all, in cents.
    pub total_cents: i64,
    /// What has been paid, in cents.
    pub paid_cents: i64,
    /// The order's version the row includes.
    pub version: u64,
}

/// `GET /orders`: the read model's orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderList {
    /// The orders, by id.
    pub orders: Vec<OrderRow>,
    /// The read model's checkpoint when it was read: it includes every event up to this
    /// position (`null` before the first).
    pub checkpoint: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What kind of error: `bad_request`, `not_found`, `rejected`, `conflict`, `archived`,
    /// `stale`, `unavailable` or `internal`.
    pub error: String,
    /// What went wrong, and what to do about it.
    pub message: String,
}
