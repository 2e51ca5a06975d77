use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    #[personal(subject = customer_id)]
    Registered { customer_id: String, name: String },
}

fn main() {}
