use es_core::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Email(String);

// `forgotten = Default` needs the field type's `Default`: reported at the type.
#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        #[personal(subject = customer_id, forgotten = Default)]
        email: Email,
    },
}

fn main() {}
