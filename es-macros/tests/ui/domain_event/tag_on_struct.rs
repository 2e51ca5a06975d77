use es_core::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
#[tag(prefix = "course")]
struct CourseDefined {
    id: String,
}

fn main() {}
