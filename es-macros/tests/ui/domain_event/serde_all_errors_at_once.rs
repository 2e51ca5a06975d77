// Every misplaced serde attribute is reported in one compile, next to the derive's other
// errors, and the stub impl keeps `uses_it` free of follow-up errors.
use es_core::DomainEvent;

#[derive(Debug, Clone, DomainEvent)]
#[serde(rename_all = "camelCase", tag = "type")]
enum AccountEvent {
    #[serde(rename = "opened")]
    Opened {
        #[serde(rename = "owner")]
        owner_name: String,
    },
    #[event(version = 0)]
    Renamed(#[serde(default)] String),
}

fn uses_it<E: DomainEvent>() {}

fn main() {
    uses_it::<AccountEvent>();
}
