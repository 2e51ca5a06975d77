use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum CustomerEvent {
    Renamed(#[personal(subject = "fixed:crm", forgotten = "")] String),
}

fn main() {}
