use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    Opened { owner: String },
    #[serde(skip)]
    Audited { by: String },
}

fn main() {}
