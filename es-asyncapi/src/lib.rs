//! AsyncAPI 3.0 documents of es-rs event channels, generated from the derives.
//!
//! Other services consume an aggregate's events as one *channel* of fine-grained messages:
//! the orders channel carries `OrderNew`, `OrderPaymentReceived`, `OrderShipped`, …, told
//! apart by the `ce-type` header (the discriminator) and tied together by a correlation id.
//! This crate describes such channels as an [AsyncAPI 3.0.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0)
//! document, built from the same declarations the store uses, so the document cannot drift
//! from what is stored:
//!
//! - one [`Channel`] per aggregate category, at an address pattern such as
//!   `orders.{streamId}`;
//! - one message per event type that `#[derive(EventSchema)]` describes: its stored name,
//!   schema version, a title from the Rust name and a summary and description from the doc
//!   comment, the payload's JSON Schema
//!   (from [schemars](https://docs.rs/schemars), following the fields' `#[serde(...)]`
//!   attributes as the stored payload does), the [`headers`] every relayed event carries,
//!   and the older versions and names that upcasters still read (`x-es-older-versions`,
//!   `x-es-aliases`), since a consumer of the raw log may receive them;
//! - [`Operation`]s: `send` for the service that owns the aggregate, `receive` for one that
//!   consumes it.
//!
//! A separate crate, not an es-core feature: the document model and the YAML writer are
//! wanted only by services that publish a description, and es-core stays small for the
//! rest. The relay and the admin tooling build on it for channel names and header names.
//!
//! ```
//! use es_asyncapi::{AsyncApi, Channel, Operation};
//! use es_core::{Aggregate, AggregateType, DomainEvent, EventSchema};
//!
//! /// What happens to an order.
//! #[derive(Debug, Clone, DomainEvent, EventSchema)]
//! enum OrderEvent {
//!     /// The customer placed the order.
//!     #[event(name = "OrderNew")]
//!     Placed { customer: String },
//!     /// The order left the warehouse.
//!     #[event(name = "OrderShipped", version = 2, upcast(from = 1, with = shipped_v1))]
//!     Shipped { carrier: String },
//! }
//! # fn shipped_v1(e: es_core::RawEvent) -> Result<es_core::RawEvent, es_core::UpcastError> { Ok(e.with_version(2)) }
//! # #[derive(Debug, thiserror::Error)] #[error("no")] struct Never;
//! #[derive(Debug, Default, AggregateType)]
//! #[aggregate(name = "order", command = (), event = OrderEvent, error = Never)]
//! struct Order;
//! # impl Aggregate for Order {
//! #     async fn handle(&self, _: (), _: &()) -> Result<Vec<OrderEvent>, Never> { Ok(vec![]) }
//! #     fn apply(&mut self, _: &OrderEvent) {}
//! # }
//!
//! let document = AsyncApi::new("Shipping", "1.0.0")
//!     .server("nats", "localhost:4222", "nats")
//!     .channel(Channel::for_aggregate::<Order>())
//!     .operation(Operation::send("publishOrderEvents", "EventSourceOrders"))
//!     .build()?;
//!
//! let shipped = &document.as_json()["components"]["messages"]["OrderShipped"];
//! assert_eq!(shipped["payload"]["required"][0], "carrier");
//! assert_eq!(shipped["x-es-older-versions"][0], 1);
//! println!("{}", document.to_yaml()?);
//! # Ok::<(), es_asyncapi::AsyncApiError>(())
//! ```

mod address;
mod channel;
mod document;
mod error;
pub mod headers;

pub use crate::address::Address;
pub use crate::channel::Channel;
pub use crate::document::{AsyncApi, Document, Operation};
pub use crate::error::AsyncApiError;
pub use es_core::{EventDescription, EventSchema};
