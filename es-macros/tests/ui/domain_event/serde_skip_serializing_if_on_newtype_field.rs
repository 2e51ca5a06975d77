use es_core::DomainEvent;

// serde does not skip a newtype's field: `None` would still be stored, as `null`.
#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    Noted(#[serde(skip_serializing_if = "Option::is_none")] Option<String>),
}

fn main() {}
