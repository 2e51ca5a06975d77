//! A small customer domain whose events hold personal data (`#[personal]` fields), for the
//! crypto-shredding cases: an aggregate that keeps the personal values in its state (so
//! that its snapshots hold them too), its events, and one command.

use es_core::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// What a reader sees in place of a forgotten customer's name.
pub const FORGOTTEN_NAME: &str = "(forgotten)";

/// Something that happened to a customer.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
pub enum CustomerEvent {
    /// The customer registered.
    Registered {
        /// Who: the data subject of the personal fields.
        customer_id: String,
        /// Their name (personal).
        #[personal(subject = customer_id, forgotten = "(forgotten)")]
        name: String,
        /// Their address (personal; `None` once forgotten).
        #[personal(subject = customer_id)]
        address: Option<String>,
        /// Not personal.
        tier: u32,
    },
    /// The customer moved.
    Moved {
        /// Who.
        customer_id: String,
        /// The new address (personal).
        #[personal(subject = customer_id)]
        address: Option<String>,
    },
    /// A note by the support desk, about the desk itself: a fixed subject.
    Noted {
        /// What the desk wrote (personal data of the desk's staff, as a fixed subject).
        #[personal(subject = "fixed:support-desk", forgotten = Default)]
        text: String,
    },
}

impl CustomerEvent {
    /// A registration of `customer_id` with `name`, living at `address`.
    pub fn registered(customer_id: &str, name: &str, address: &str) -> Self {
        Self::Registered {
            customer_id: customer_id.to_owned(),
            name: name.to_owned(),
            address: Some(address.to_owned()),
            tier: 1,
        }
    }

    /// The same event as a reader sees it once its subject is forgotten.
    pub fn forgotten(&self) -> Self {
        match self {
            Self::Registered {
                customer_id, tier, ..
            } => Self::Registered {
                customer_id: customer_id.clone(),
                name: FORGOTTEN_NAME.to_owned(),
                address: None,
                tier: *tier,
            },
            Self::Moved { customer_id, .. } => Self::Moved {
                customer_id: customer_id.clone(),
                address: None,
            },
            Self::Noted { .. } => Self::Noted {
                text: String::new(),
            },
        }
    }
}

/// What can be asked of a customer.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerCommand {
    /// Move to `address`.
    Move {
        /// The new address.
        address: String,
    },
}

/// Why a customer refuses a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CustomerError {
    /// The customer never registered.
    #[error("the customer is not registered")]
    NotRegistered,
}

/// A customer, as the events tell it: its snapshots hold its personal values.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, es_core::AggregateType)]
#[aggregate(
    name = "customer",
    command = CustomerCommand,
    event = CustomerEvent,
    error = CustomerError
)]
pub struct Customer {
    /// Its id, once registered.
    pub id: Option<String>,
    /// Its name.
    pub name: Option<String>,
    /// Its address.
    pub address: Option<String>,
    /// How many events it saw.
    pub events: u64,
}

impl Aggregate for Customer {
    async fn handle(
        &self,
        command: CustomerCommand,
        _services: &(),
    ) -> Result<Vec<CustomerEvent>, CustomerError> {
        let Some(id) = &self.id else {
            return Err(CustomerError::NotRegistered);
        };
        match command {
            CustomerCommand::Move { address } => Ok(vec![CustomerEvent::Moved {
                customer_id: id.clone(),
                address: Some(address),
            }]),
        }
    }

    fn apply(&mut self, event: &CustomerEvent) {
        self.events += 1;
        match event {
            CustomerEvent::Registered {
                customer_id,
                name,
                address,
                ..
            } => {
                self.id = Some(customer_id.clone());
                self.name = Some(name.clone());
                self.address.clone_from(address);
            }
            CustomerEvent::Moved { address, .. } => self.address.clone_from(address),
            CustomerEvent::Noted { .. } => {}
        }
    }
}
