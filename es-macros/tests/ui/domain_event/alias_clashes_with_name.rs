use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum OrderEvent {
    Placed { customer: String },
    // `Placed` already names the variant above.
    #[event(alias = "Placed")]
    Shipped { carrier: String },
}

fn main() {}
