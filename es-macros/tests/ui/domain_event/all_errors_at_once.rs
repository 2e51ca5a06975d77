// Every mistake in one input is reported in one compile, each at its own tokens, and the
// stub impl keeps `uses_it` free of follow-up errors.
use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
enum AccountEvent {
    #[event(name = "Opened", colour = "red")]
    Opened { owner: String },
    #[event(name = "Opened", version = 0)]
    Reopened,
    Moved(u8, u8),
}

fn uses_it<E: DomainEvent>() {}

fn main() {
    uses_it::<AccountEvent>();
}
