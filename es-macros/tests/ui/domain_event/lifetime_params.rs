use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum Commented<'a> {
    Added { text: &'a str },
}

fn main() {}
