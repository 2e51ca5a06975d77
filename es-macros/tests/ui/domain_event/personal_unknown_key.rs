use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        #[personal(subject = customer_id, forgoten = "")]
        name: Option<String>,
    },
}

fn main() {}
