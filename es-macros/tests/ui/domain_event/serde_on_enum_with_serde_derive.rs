use es_core::DomainEvent;
use serde::{Deserialize, Serialize};

// serde's own derive honours `rename_all` in serde's tagged encoding, but that encoding is
// never stored: the payloads would still ignore it, so it is refused all the same.
#[derive(Debug, Clone, Serialize, Deserialize, DomainEvent)]
#[serde(rename_all = "snake_case")]
enum AccountEvent {
    Opened { owner: String },
}

fn main() {}
