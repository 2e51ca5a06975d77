use es_core::DomainEvent;
use std::collections::BTreeMap;

#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        #[serde(flatten)]
        ids: BTreeMap<String, String>,
        #[personal(subject = ids)]
        name: Option<String>,
    },
}

fn main() {}
