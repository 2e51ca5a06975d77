use es_core::DomainEvent;

// The payloads are built per variant, so the enum's `rename_all` would change nothing.
#[derive(Debug, Clone, DomainEvent)]
#[serde(rename_all = "camelCase")]
enum AccountEvent {
    Opened { owner_name: String },
}

fn main() {}
