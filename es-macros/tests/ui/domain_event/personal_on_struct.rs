use es_core::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
#[personal(subject = "fixed:crm")]
struct NoteTaken {
    note: String,
}

fn main() {}
