use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
#[serde(deny_unknown_fields)]
enum AccountEvent {
    Opened { owner: String },
}

fn main() {}
