use es_core::RawEvent;

#[derive(Debug, Clone)]
enum AccountEvent {
    Opened { owner: String },
}

fn main() {
    let _ = RawEvent::from_event(&AccountEvent::Opened { owner: "ada".into() });
}
