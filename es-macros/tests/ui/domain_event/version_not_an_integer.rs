use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[event(version = "2")]
    Opened { owner: String },
}

fn main() {}
