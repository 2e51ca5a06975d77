use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[event(version = 4294967296)]
    Opened { owner: String },
}

fn main() {}
