use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum NothingHappened {}

fn main() {}
