//! The order aggregate: its events, commands, rules and state.

use es_core::{Aggregate, DomainEvent, EventSchema};
use serde::{Deserialize, Serialize};

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineItem {
    /// The product's stock-keeping unit.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Price of one, in cents.
    pub unit_price_cents: i64,
}

impl LineItem {
    /// A line of `quantity` times `sku` at `unit_price_cents` each.
    pub fn new(sku: &str, quantity: u32, unit_price_cents: i64) -> Self {
        Self {
            sku: sku.to_owned(),
            quantity,
            unit_price_cents,
        }
    }

    fn total_cents(&self) -> i64 {
        i64::from(self.quantity) * self.unit_price_cents
    }
}

/// What happens to an order. Each variant is its own event type in the order's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent, EventSchema)]
pub enum OrderEvent {
    /// The customer placed the order.
    //
    // The name and address are personal data of the customer, whose id is their data
    // subject: over a `Protected` store they are stored encrypted under the customer's key,
    // and read as `(forgotten)` once the customer is forgotten. The id is stored in clear
    // (an opaque id of the shop's, not personal data). Events written before the id and
    // address existed read them as empty.
    #[event(name = "OrderNew")]
    Placed {
        /// Who ordered: the shop's id of the customer.
        #[serde(default)]
        customer_id: String,
        /// The customer's name.
        #[personal(subject = customer_id, forgotten = "(forgotten)")]
        customer: String,
        /// Where the order goes.
        #[personal(subject = customer_id, forgotten = "(forgotten)")]
        #[serde(default)]
        address: String,
        /// What.
        items: Vec<LineItem>,
        /// The amount due, in cents.
        total_cents: i64,
    },
    /// A payment came in (an order may be paid in parts).
    #[event(name = "OrderPaymentReceived")]
    PaymentReceived {
        /// How much, in cents.
        amount_cents: i64,
        /// The payment provider's reference.
        reference: String,
    },
    /// A warehouse started picking and packing.
    #[event(name = "OrderPreparing")]
    Preparing {
        /// Which warehouse.
        warehouse: String,
    },
    /// The order left the warehouse.
    #[event(name = "OrderShipped")]
    Shipped {
        /// Who carries it.
        carrier: String,
        /// The carrier's tracking number.
        tracking_number: String,
    },
}

/// What can be asked of an order.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    /// Place a new order.
    Place {
        /// Who orders: the shop's id of the customer (not personal data).
        customer_id: String,
        /// The customer's name.
        customer: String,
        /// Where the order goes.
        address: String,
        /// What.
        items: Vec<LineItem>,
    },
    /// Record a payment.
    ReceivePayment {
        /// How much, in cents.
        amount_cents: i64,
        /// The payment provider's reference.
        reference: String,
    },
    /// Start preparing a fully paid order.
    StartPreparing {
        /// Which warehouse.
        warehouse: String,
    },
    /// Ship an order that is being prepared.
    Ship {
        /// Who carries it.
        carrier: String,
        /// The carrier's tracking number.
        tracking_number: String,
    },
}

/// Why an order refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// The order exists already.
    #[error("the order has already been placed")]
    AlreadyPlaced,
    /// There is no such order.
    #[error("the order has not been placed")]
    NotPlaced,
    /// An order needs at least one line.
    #[error("an order needs at least one item")]
    NoItems,
    /// A line with nothing in it, or a negative price.
    #[error("item `{sku}` needs a positive quantity and a non-negative price")]
    InvalidItem {
        /// The offending line's product.
        sku: String,
    },
    /// Payments are positive.
    #[error("a payment must be positive")]
    InvalidAmount,
    /// The payment is more than is still due.
    #[error("payment of {received_cents} cents exceeds the {due_cents} cents still due")]
    Overpayment {
        /// What is still due.
        due_cents: i64,
        /// What came in.
        received_cents: i64,
    },
    /// The order is paid in full already.
    #[error("the order is already paid")]
    AlreadyPaid,
    /// The order is not paid in full.
    #[error("the order is not paid: {due_cents} cents still due")]
    NotPaid {
        /// What is still due.
        due_cents: i64,
    },
    /// Preparation started already.
    #[error("the order is already being prepared")]
    AlreadyPreparing,
    /// Preparation has not started.
    #[error("the order is not being prepared yet")]
    NotPreparing,
    /// The order left already.
    #[error("the order has already been shipped")]
    AlreadyShipped,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Not placed yet.
    #[default]
    Draft,
    /// Placed, not fully paid.
    Placed,
    /// Paid in full.
    Paid,
    /// Being prepared in a warehouse.
    Preparing,
    /// On its way.
    Shipped,
}

/// An order, as its events made it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, es_core::AggregateType)]
#[aggregate(name = "order", command = OrderCommand, event = OrderEvent, error = OrderError)]
pub struct Order {
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Who ordered: the shop's id of the customer.
    pub customer_id: String,
    /// The customer's name (`(forgotten)` once the customer is forgotten).
    pub customer: String,
    /// Where the order goes (`(forgotten)` once the customer is forgotten).
    pub address: String,
    /// What.
    pub items: Vec<LineItem>,
    /// The amount due in all, in cents.
    pub total_cents: i64,
    /// What has been paid, in cents.
    pub paid_cents: i64,
    /// The warehouse preparing it.
    pub warehouse: Option<String>,
    /// The carrier and tracking number, once shipped.
    pub shipment: Option<(String, String)>,
}

impl Order {
    /// What is still due, in cents.
    pub fn due_cents(&self) -> i64 {
        self.total_cents - self.paid_cents
    }
}

impl Aggregate for Order {
    async fn handle(
        &self,
        command: OrderCommand,
        _services: &(),
    ) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderStatus::{Draft, Paid, Placed, Preparing, Shipped};
        match (self.status, command) {
            (
                Draft,
                OrderCommand::Place {
                    customer_id,
                    customer,
                    address,
                    items,
                },
            ) => {
                if items.is_empty() {
                    return Err(OrderError::NoItems);
                }
                if let Some(bad) = items
                    .iter()
                    .find(|i| i.quantity == 0 || i.unit_price_cents < 0)
                {
                    return Err(OrderError::InvalidItem {
                        sku: bad.sku.clone(),
                    });
                }
                let total_cents = items.iter().map(LineItem::total_cents).sum();
                Ok(vec![OrderEvent::Placed {
                    customer_id,
                    customer,
                    address,
                    items,
                    total_cents,
                }])
            }
            (_, OrderCommand::Place { .. }) => Err(OrderError::AlreadyPlaced),
            (Draft, _) => Err(OrderError::NotPlaced),

            (Placed, OrderCommand::ReceivePayment { amount_cents, .. }) if amount_cents <= 0 => {
                Err(OrderError::InvalidAmount)
            }
            (
                Placed,
                OrderCommand::ReceivePayment {
                    amount_cents,
                    reference,
                },
            ) => {
                if amount_cents > self.due_cents() {
                    return Err(OrderError::Overpayment {
                        due_cents: self.due_cents(),
                        received_cents: amount_cents,
                    });
                }
                Ok(vec![OrderEvent::PaymentReceived {
                    amount_cents,
                    reference,
                }])
            }
            (_, OrderCommand::ReceivePayment { .. }) => Err(OrderError::AlreadyPaid),

            (Placed, OrderCommand::StartPreparing { .. }) => Err(OrderError::NotPaid {
                due_cents: self.due_cents(),
            }),
            (Paid, OrderCommand::StartPreparing { warehouse }) => {
                Ok(vec![OrderEvent::Preparing { warehouse }])
            }
            (Preparing, OrderCommand::StartPreparing { .. }) => Err(OrderError::AlreadyPreparing),
            (Shipped, OrderCommand::StartPreparing { .. }) => Err(OrderError::AlreadyShipped),

            (Placed, OrderCommand::Ship { .. }) => Err(OrderError::NotPaid {
                due_cents: self.due_cents(),
            }),
            (Paid, OrderCommand::Ship { .. }) => Err(OrderError::NotPreparing),
            (
                Preparing,
                OrderCommand::Ship {
                    carrier,
                    tracking_number,
                },
            ) => Ok(vec![OrderEvent::Shipped {
                carrier,
                tracking_number,
            }]),
            (Shipped, OrderCommand::Ship { .. }) => Err(OrderError::AlreadyShipped),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed {
                customer_id,
                customer,
                address,
                items,
                total_cents,
            } => {
                self.status = OrderStatus::Placed;
                self.customer_id.clone_from(customer_id);
                self.customer.clone_from(customer);
                self.address.clone_from(address);
                self.items.clone_from(items);
                self.total_cents = *total_cents;
                // A free order is paid the moment it exists.
                if *total_cents == 0 {
                    self.status = OrderStatus::Paid;
                }
            }
            OrderEvent::PaymentReceived { amount_cents, .. } => {
                self.paid_cents += amount_cents;
                if self.paid_cents >= self.total_cents {
                    self.status = OrderStatus::Paid;
                }
            }
            OrderEvent::Preparing { warehouse } => {
                self.status = OrderStatus::Preparing;
                self.warehouse = Some(warehouse.clone());
            }
            OrderEvent::Shipped {
                carrier,
                tracking_number,
            } => {
                self.status = OrderStatus::Shipped;
                self.shipment = Some((carrier.clone(), tracking_number.clone()));
            }
        }
    }
}
