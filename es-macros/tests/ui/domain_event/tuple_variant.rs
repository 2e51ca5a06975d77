use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum RobotEvent {
    Moved(i32, i32),
    Stopped,
}

fn main() {}
