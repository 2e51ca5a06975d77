use es_core::DomainEvent;
use serde::{Deserialize, Serialize};

// Stored through another type, the payload would not hold the personal field under its
// own key, and the value would be stored in clear: refused.
#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
#[serde(into = "Wire", from = "Wire")]
struct CustomerRegistered {
    customer_id: String,
    #[personal(subject = customer_id, forgotten = "?")]
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    id: String,
    n: String,
}

impl From<CustomerRegistered> for Wire {
    fn from(event: CustomerRegistered) -> Self {
        Self { id: event.customer_id, n: event.name }
    }
}

impl From<Wire> for CustomerRegistered {
    fn from(wire: Wire) -> Self {
        Self { customer_id: wire.id, name: wire.n }
    }
}

fn main() {}
