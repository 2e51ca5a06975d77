//! The es-rs event log, shared through NATS JetStream.
//!
//! An event store is usually paired with a broker that carries its events to other
//! services. This crate is both ends of that for NATS JetStream:
//!
//! - [`Relay`] follows the store's committed log from a checkpoint and publishes every
//!   event of the routed categories to a subject derived from its channel and stream
//!   (`orders.42` for stream `order-42` at address `orders.{streamId}`), with the headers
//!   the channel's [AsyncAPI document](es_asyncapi) describes. It is a [`Projection`](es_core::Projection),
//!   run by a [`ProjectionRunner`](es_core::ProjectionRunner), so the same checkpoint,
//!   lease, status and error policy as every projection apply. Delivery is at least once,
//!   made exactly once in the stream by `Nats-Msg-Id` (the event id) and by resuming after
//!   what JetStream already holds; order is the log's, kept by
//!   `Nats-Expected-Last-Msg-Id`.
//! - [`decode`] reads a relayed message back as the typed [`EventEnvelope`](es_core::EventEnvelope),
//!   upcast by the consumer's own derive, and [`Consumer`] runs a projection or process
//!   manager from a durable JetStream consumer with explicit acks, skipping what it has
//!   handled.
//!
//! See the guide page *Sharing events with other services* (`docs/src/sharing-events.md`) for
//! the guarantees and their limits.

mod consume;
mod error;
mod message;
mod relay;
mod stream;

pub use crate::consume::{Consumer, MAX_ACK_PENDING};
pub use crate::error::{ConsumeError, RelayError};
pub use crate::message::{MessageError, decode};
pub use crate::relay::{Relay, RelayBuilder};
