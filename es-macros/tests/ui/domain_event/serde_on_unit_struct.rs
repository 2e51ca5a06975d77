use es_core::DomainEvent;
use serde::{Deserialize, Serialize};

// The payload of a struct without fields is `{}`, written without serde, so `into` would
// change its serde encoding but not what is stored.
#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
#[serde(into = "String", from = "String")]
struct Heartbeat;

impl From<Heartbeat> for String {
    fn from(_: Heartbeat) -> String {
        "beat".into()
    }
}

impl From<String> for Heartbeat {
    fn from(_: String) -> Heartbeat {
        Heartbeat
    }
}

fn main() {}
