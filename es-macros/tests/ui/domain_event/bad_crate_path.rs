use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
#[event(crate = "not a path")]
enum AccountEvent {
    Opened { owner: String },
}

fn main() {}
