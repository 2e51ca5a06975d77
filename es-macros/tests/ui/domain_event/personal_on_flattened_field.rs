use es_core::DomainEvent;
use std::collections::BTreeMap;

#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        #[personal(subject = customer_id, forgotten = Default)]
        #[serde(flatten)]
        details: BTreeMap<String, String>,
    },
}

fn main() {}
