use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum OrderEvent {
    #[event(version = 2, upcast(from = 1))]
    Shipped { carrier: String },
}

fn main() {}
