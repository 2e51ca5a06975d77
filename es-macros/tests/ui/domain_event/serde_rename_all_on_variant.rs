use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[serde(rename_all = "camelCase")]
    Opened { owner_name: String },
}

fn main() {}
