//! The events the orders service shares with other services, as an AsyncAPI 3.0 document.
//!
//! One channel, `EventSourceOrders`, at `orders.{streamId}`, carries the four order event
//! types; the shipping service that owns the orders sends them. `cargo run -p orders --
//! asyncapi` prints the document as YAML (`--json` for JSON); `asyncapi.yaml` beside this
//! crate's manifest is the committed copy, which a test keeps equal to what the code builds.

use es_asyncapi::{AsyncApi, AsyncApiError, Channel, Document, Operation};

use crate::Order;

/// The channel of order events.
pub const CHANNEL: &str = "EventSourceOrders";

/// The JetStream stream the example relays order events to.
pub const STREAM: &str = "ORDERS";

/// The orders service's AsyncAPI document.
///
/// # Errors
///
/// Never for this domain; an [`AsyncApiError`] would name an event type or address that
/// AsyncAPI cannot hold.
pub fn asyncapi() -> Result<Document, AsyncApiError> {
    AsyncApi::new("Shipping service", "1.0.0")
        .description(
            "Owns orders from placement to shipping, and shares every order event with the \
             services that follow orders (billing, notifications, analytics).",
        )
        .server("nats", "localhost:4222", "nats")
        .channel(
            Channel::for_aggregate::<Order>()
                .with_title("Order events")
                .with_description(
                    "Every event of every order, in each order's version order. Messages are \
                     told apart by the `ce-type` header and tied together by \
                     `es-correlation-id`.",
                ),
        )
        .operation(
            Operation::send("publishOrderEvents", CHANNEL)
                .summary("The shipping service publishes each order event once it is stored."),
        )
        .build()
}
