use es_core::DomainEvent;

#[derive(Clone, Copy, DomainEvent)]
union Bits {
    int: u32,
    float: f32,
}

fn main() {}
