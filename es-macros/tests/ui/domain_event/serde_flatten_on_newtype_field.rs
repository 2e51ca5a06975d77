use es_core::DomainEvent;
use std::collections::BTreeMap;

// serde refuses this too, but about a helper struct the user never wrote.
#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    Labelled(#[serde(flatten)] BTreeMap<String, String>),
}

fn main() {}
