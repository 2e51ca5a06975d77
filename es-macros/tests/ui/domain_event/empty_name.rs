use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[event(name = "")]
    Opened { owner: String },
}

fn main() {}
