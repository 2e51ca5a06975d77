//! A realistic run over several orders, on any store, written as a readable report.

use std::fmt::Write as _;

use es_core::{
    CommandError, DomainEvent as _, EventEnvelope, EventFilter, EventStore, Position, Projection,
    Repository, SnapshotPolicy, SnapshotStore, Version,
};
use futures_util::TryStreamExt as _;

use crate::order::{LineItem, Order, OrderCommand, OrderError, OrderEvent};
use crate::summary::OrderSummaries;

/// A failure of the scenario itself (not a rejected command, which it expects).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the scenario did.
#[derive(Debug)]
pub struct Report {
    /// The order ids it used (unique per run, so runs on a persistent store do not clash).
    pub order_ids: Vec<String>,
    /// Each order's recorded events, by order id, in stream order.
    pub histories: Vec<(String, Vec<EventEnvelope<OrderEvent>>)>,
    /// Each order's state as rebuilt from its events.
    pub states: Vec<(String, Order)>,
    /// The commands that were rejected, with why.
    pub rejections: Vec<(String, OrderCommand, OrderError)>,
    /// The read model built from the global log, restricted to this run's orders.
    pub summaries: OrderSummaries,
    /// The report as text.
    pub text: String,
}

/// Plays the scenario on `store`: four orders, two of which receive a command their state
/// forbids.
///
/// # Errors
///
/// Fails if the store fails; rejected commands are part of the scenario and recorded in the
/// report.
pub async fn run<S>(store: S) -> Result<Report, Error>
where
    S: EventStore + SnapshotStore,
{
    let run = uuid::Uuid::now_v7().simple().to_string();
    let run = &run[run.len() - 6..];
    let orders =
        Repository::<Order, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::every(3));

    let ids: Vec<String> = (1..=4).map(|n| format!("{run}-{n}")).collect();
    let plan: Vec<(&str, OrderCommand)> = vec![
        // Order 1: the happy path.
        (
            &ids[0],
            place("ada", &[("BOOK-1984", 2, 1_250), ("MUG-TEA", 1, 900)]),
        ),
        (&ids[0], pay(3_400, "psp-1001")),
        (&ids[0], prepare("berlin-2")),
        (&ids[0], ship("dhl", "JD0146000123")),
        // Order 2: paid in two parts, then prepared.
        (&ids[1], place("grace", &[("LAMP-ARC", 1, 7_900)])),
        (&ids[1], pay(4_000, "psp-1002")),
        (&ids[1], pay(3_900, "psp-1003")),
        (&ids[1], prepare("leipzig-1")),
        // Order 3: shipping before payment is rejected; the order stays placed.
        (&ids[2], place("alan", &[("CABLE-USB", 3, 499)])),
        (&ids[2], ship("ups", "1Z999AA10123456784")),
        // Order 4: paying more than is due is rejected; the right amount goes through.
        (&ids[3], place("barbara", &[("PEN-FOUNTAIN", 1, 2_500)])),
        (&ids[3], pay(3_000, "psp-1004")),
        (&ids[3], pay(2_500, "psp-1005")),
    ];

    let mut rejections = Vec::new();
    for (id, command) in plan {
        match orders.execute(id, command.clone()).await {
            Ok(_) => {}
            Err(CommandError::Rejected { error, .. }) => {
                rejections.push((id.to_owned(), command, error));
            }
            Err(other) => return Err(other.into()),
        }
    }

    let mut histories = Vec::new();
    let mut states = Vec::new();
    for id in &ids {
        let stream = orders.stream_id(id)?;
        let events: Vec<_> = store
            .read_stream::<OrderEvent>(&stream, Version::INITIAL)
            .try_collect()
            .await?;
        histories.push((id.clone(), events));
        states.push((id.clone(), orders.load(id).await?.state));
    }

    // The read model follows the global log. Subscribing (rather than reading once) waits
    // for events a store may still hold back: PostgreSQL delivers an event only once every
    // transaction that began before it has ended, so that none is ever skipped.
    let expected: usize = histories.iter().map(|(_, events)| events.len()).sum();
    let mut summaries = OrderSummaries::default();
    let mut seen = 0;
    let log = store.subscribe::<OrderEvent>(Position::START, EventFilter::for_aggregate::<Order>());
    futures_util::pin_mut!(log);
    while seen < expected {
        let Some(envelope) = log.try_next().await? else {
            break;
        };
        if ids.iter().any(|id| id == envelope.stream_id.id()) {
            summaries.handle(&envelope).await?;
            seen += 1;
        }
    }

    let text = render(&histories, &states, &rejections, &summaries)?;
    Ok(Report {
        order_ids: ids,
        histories,
        states,
        rejections,
        summaries,
        text,
    })
}

fn place(customer: &str, items: &[(&str, u32, i64)]) -> OrderCommand {
    OrderCommand::Place {
        customer: customer.to_owned(),
        items: items
            .iter()
            .map(|&(sku, quantity, price)| LineItem::new(sku, quantity, price))
            .collect(),
    }
}

fn pay(amount_cents: i64, reference: &str) -> OrderCommand {
    OrderCommand::ReceivePayment {
        amount_cents,
        reference: reference.to_owned(),
    }
}

fn prepare(warehouse: &str) -> OrderCommand {
    OrderCommand::StartPreparing {
        warehouse: warehouse.to_owned(),
    }
}

fn ship(carrier: &str, tracking_number: &str) -> OrderCommand {
    OrderCommand::Ship {
        carrier: carrier.to_owned(),
        tracking_number: tracking_number.to_owned(),
    }
}

fn render(
    histories: &[(String, Vec<EventEnvelope<OrderEvent>>)],
    states: &[(String, Order)],
    rejections: &[(String, OrderCommand, OrderError)],
    summaries: &OrderSummaries,
) -> Result<String, Error> {
    let mut out = String::new();
    for ((id, events), (_, state)) in histories.iter().zip(states) {
        writeln!(out, "order-{id}")?;
        for envelope in events {
            writeln!(
                out,
                "  v{:<2} {}  {:<21} {}",
                envelope.version,
                envelope.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                envelope.event.event_type(),
                envelope.event.encode()?,
            )?;
        }
        let shipment = state
            .shipment
            .as_ref()
            .map(|(carrier, tracking)| format!(", shipped with {carrier} ({tracking})"))
            .unwrap_or_default();
        writeln!(
            out,
            "  state rebuilt from {} events: {:?} for {}, paid {} of {} cents{shipment}\n",
            events.len(),
            state.status,
            state.customer,
            state.paid_cents,
            state.total_cents,
        )?;
    }
    writeln!(out, "rejected commands:")?;
    for (id, command, error) in rejections {
        writeln!(out, "  order-{id}: {command:?}\n    -> {error}")?;
    }
    writeln!(out, "\nread model (from the global log):")?;
    for (id, summary) in &summaries.orders {
        writeln!(
            out,
            "  order-{id:<10} {:<10} {:<9} {:>6} / {:>6} cents",
            summary.customer,
            format!("{:?}", summary.status),
            summary.paid_cents,
            summary.total_cents
        )?;
    }
    writeln!(out, "  revenue received: {} cents", summaries.revenue_cents)?;
    Ok(out)
}
