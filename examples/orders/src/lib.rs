//! The order lifecycle on es-rs.
//!
//! An order is placed (`OrderNew`), paid in one or more payments (`OrderPaymentReceived`),
//! prepared in a warehouse (`OrderPreparing`) and shipped (`OrderShipped`); each is its own
//! event type on the order's stream. Commands that break the lifecycle (shipping an unpaid
//! order, paying too much) are rejected with an [`OrderError`].
//!
//! - [`order`]: the aggregate, its events, commands and rules;
//! - [`summary`]: a read model of all orders;
//! - [`scenario`]: the realistic run the `orders` binary prints;
//! - [`channels`]: the AsyncAPI document of the events it shares (`orders asyncapi`).

pub mod channels;
pub mod order;
pub mod scenario;
pub mod summary;

pub use order::{LineItem, Order, OrderCommand, OrderError, OrderEvent, OrderStatus};
pub use summary::{OrderSummaries, OrderSummary};
