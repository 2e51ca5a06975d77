use es_core::DomainEvent;

// A newtype payload is the field's own encoding (`"Ada"`), with no field name to rename.
#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    Renamed(#[serde(rename = "name")] String),
}

fn main() {}
