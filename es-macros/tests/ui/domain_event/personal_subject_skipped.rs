use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        #[serde(skip_deserializing)]
        customer_id: String,
        #[personal(subject = customer_id)]
        name: Option<String>,
    },
}

fn main() {}
