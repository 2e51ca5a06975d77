use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum Changed<T> {
    Set { value: T },
    Cleared,
}

fn main() {}
