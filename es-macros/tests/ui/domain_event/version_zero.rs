use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[event(version = 0)]
    Opened { owner: String },
}

fn main() {}
