use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        #[personal(subject = customer_id)]
        #[personal(forgotten = "")]
        name: Option<String>,
    },
}

fn main() {}
