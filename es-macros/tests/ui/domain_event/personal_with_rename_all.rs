use es_core::DomainEvent;
use serde::{Deserialize, Serialize};

// The derive finds personal fields by their keys, and does not convert names as serde does.
#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
#[serde(rename_all = "camelCase")]
struct CustomerRegistered {
    customer_id: String,
    #[personal(subject = customer_id)]
    full_name: Option<String>,
}

fn main() {}
