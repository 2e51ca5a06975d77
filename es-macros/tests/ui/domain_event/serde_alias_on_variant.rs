use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[serde(alias = "Created")]
    Opened { owner: String },
}

fn main() {}
