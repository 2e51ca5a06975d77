use es_core::DomainEvent;

// Only an `Option` has an obvious value to read once forgotten.
#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        #[personal(subject = customer_id)]
        name: String,
    },
}

fn main() {}
