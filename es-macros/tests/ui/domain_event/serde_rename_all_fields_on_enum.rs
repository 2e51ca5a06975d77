use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
#[serde(rename_all_fields = "camelCase")]
enum AccountEvent {
    Opened { owner_name: String },
}

fn main() {}
