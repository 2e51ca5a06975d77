use es_core::DomainEvent;

// Tags are stored in the clear.
#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        #[tag]
        #[personal(subject = customer_id, forgotten = "")]
        email: String,
    },
}

fn main() {}
