//! A realistic run over several orders, on any store, written as a readable report.
//!
//! The store is [`Protected`]: the customers' names and addresses are stored encrypted, each
//! under its customer's key, and the run ends by forgetting one customer (a privacy request)
//! and showing that customer's order again.

use std::fmt::Write as _;

use std::collections::HashMap;

use es_core::personal::{Forgetting, KeyStore, Protected, Subject};
use es_core::{
    AsOf, CommandContext, CommandError, DomainEvent as _, EventEnvelope, EventFilter, EventStore,
    LoadError, Position, Projection, RawEvent, Repository, SnapshotPolicy, SnapshotStore, Version,
};
use futures_util::TryStreamExt as _;
use uuid::Uuid;

use crate::order::{LineItem, Order, OrderCommand, OrderError, OrderEvent};
use crate::summary::OrderSummaries;

/// A failure of the scenario itself (not a rejected command, which it expects).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the scenario did.
#[derive(Debug)]
pub struct Report {
    /// The order ids it used (unique per run, so runs on a persistent store do not clash).
    pub order_ids: Vec<String>,
    /// Each order's recorded events with their metadata (who, when, which flow), by order
    /// id, in stream order: the audit history.
    pub histories: Vec<(String, Vec<EventEnvelope<OrderEvent>>)>,
    /// Each order's state as rebuilt from its events.
    pub states: Vec<(String, Order)>,
    /// The commands that were rejected, with why.
    pub rejections: Vec<(String, OrderCommand, OrderError)>,
    /// The shipped order as it was just before shipping: its id, the version loaded, and
    /// the state then.
    pub before_shipping: (String, Version, Order),
    /// The order that was abandoned and archived.
    pub archived: String,
    /// The command refused because its order was archived.
    pub refused_on_archived: OrderCommand,
    /// The read model built from the global log, restricted to this run's orders.
    pub summaries: OrderSummaries,
    /// The customer of the first order, forgotten at the end of the run.
    pub forgotten: ForgottenCustomer,
    /// The report as text.
    pub text: String,
}

/// The first order's customer, forgotten: the order before and after.
#[derive(Debug)]
pub struct ForgottenCustomer {
    /// The order.
    pub order_id: String,
    /// The order as loaded before the customer was forgotten.
    pub before: Order,
    /// The order as loaded after: name and address replaced, the rest as before.
    pub after: Order,
    /// Who had the customer forgotten, and when.
    pub record: Forgetting,
    /// The order's `OrderNew` payload as the inner store holds it: the name and address
    /// are envelopes (ciphertext), the rest in clear.
    pub stored: serde_json::Value,
}

/// Plays the scenario on `store`: four orders, two of which receive a command their state
/// forbids; then looks back at a shipped order as it was before shipping, and archives an
/// abandoned order, after which it takes no more commands and leaves the read model.
/// Last, the first order's customer is forgotten, and the order loaded again.
///
/// # Errors
///
/// Fails if the store or the key store fails; rejected commands are part of the scenario
/// and recorded in the report.
pub async fn run<S, K>(store: Protected<S, K>) -> Result<Report, Error>
where
    S: EventStore + SnapshotStore,
    K: KeyStore,
{
    let run = uuid::Uuid::now_v7().simple().to_string();
    let run = &run[run.len() - 6..];
    let orders =
        Repository::<Order, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::every(3));
    // The read model follows the log from here: this run's events only. (On PostgreSQL,
    // earlier runs' customers may have keys wrapped by another master key.)
    let start = store.head().await?.unwrap_or(Position::START);

    let ids: Vec<String> = (1..=4).map(|n| format!("{run}-{n}")).collect();
    // The shop's customer ids: the data subjects of the names and addresses. Unique per
    // run too, since a forgotten customer stays forgotten.
    let customers: Vec<String> = (1..=4).map(|n| format!("customer-{run}-{n}")).collect();
    // Who issues each command: the shop's front end for the customer, the payment
    // provider, the warehouse. Every event records its actor.
    let plan: Vec<(&str, &str, OrderCommand)> = vec![
        // Order 1: the happy path.
        (
            &ids[0],
            "shop-web",
            place(
                (
                    &customers[0],
                    "Ada Lovelace",
                    "12 St James's Square, London",
                ),
                &[("BOOK-1984", 2, 1_250), ("MUG-TEA", 1, 900)],
            ),
        ),
        (&ids[0], "psp", pay(3_400, "psp-1001")),
        (&ids[0], "warehouse", prepare("berlin-2")),
        (&ids[0], "warehouse", ship("dhl", "JD0146000123")),
        // Order 2: paid in two parts, then prepared.
        (
            &ids[1],
            "shop-web",
            place(
                (&customers[1], "Grace Hopper", "1 Navy Yard, Arlington"),
                &[("LAMP-ARC", 1, 7_900)],
            ),
        ),
        (&ids[1], "psp", pay(4_000, "psp-1002")),
        (&ids[1], "psp", pay(3_900, "psp-1003")),
        (&ids[1], "warehouse", prepare("leipzig-1")),
        // Order 3: shipping before payment is rejected; the order stays placed.
        (
            &ids[2],
            "shop-web",
            place(
                (
                    &customers[2],
                    "Alan Turing",
                    "Bletchley Park, Milton Keynes",
                ),
                &[("CABLE-USB", 3, 499)],
            ),
        ),
        (&ids[2], "warehouse", ship("ups", "1Z999AA10123456784")),
        // Order 4: paying more than is due is rejected; the right amount goes through.
        (
            &ids[3],
            "shop-web",
            place(
                (
                    &customers[3],
                    "Barbara Liskov",
                    "32 Vassar Street, Cambridge",
                ),
                &[("PEN-FOUNTAIN", 1, 2_500)],
            ),
        ),
        (&ids[3], "psp", pay(3_000, "psp-1004")),
        (&ids[3], "psp", pay(2_500, "psp-1005")),
    ];

    // One correlation id per order: every event of its flow carries it.
    let flows: HashMap<&str, Uuid> = ids.iter().map(|id| (id.as_str(), Uuid::now_v7())).collect();
    let mut rejections = Vec::new();
    for (id, actor, command) in plan {
        let context = CommandContext::new()
            .with_actor(actor)
            .with_correlation_id(flows[id]);
        match orders.execute_with(id, command.clone(), context).await {
            Ok(_) => {}
            Err(CommandError::Rejected { error, .. }) => {
                rejections.push((id.to_owned(), command, error));
            }
            Err(other) => return Err(other.into()),
        }
    }

    // Order 3 was never paid: the shop abandons and archives it. Its history stays; it
    // takes no more commands and leaves the read model.
    let archived = ids[2].clone();
    store.archive_stream(&orders.stream_id(&archived)?).await?;
    let refused_on_archived = pay(1_497, "psp-1006");
    match orders.execute(&archived, refused_on_archived.clone()).await {
        Err(CommandError::Archived { .. }) => {}
        other => return Err(format!("a payment on an archived order gave {other:?}").into()),
    }

    let mut histories = Vec::new();
    let mut states = Vec::new();
    for id in &ids {
        let events: Vec<_> = orders.history(id)?.try_collect().await?;
        let state = match orders.load(id).await {
            Ok(loaded) => loaded.state,
            // An archived order is not loadable, but its past is.
            Err(LoadError::Archived { .. }) => orders.load_as_of(id, AsOf::Latest).await?.state,
            Err(other) => return Err(other.into()),
        };
        histories.push((id.clone(), events));
        states.push((id.clone(), state));
    }

    // "What did order 1 look like before it shipped?": the state as of the version before
    // its shipping event.
    let shipped_at = histories[0]
        .1
        .iter()
        .find(|e| matches!(e.event, OrderEvent::Shipped { .. }))
        .map(|e| e.version)
        .ok_or("order 1 was not shipped")?;
    let before = orders
        .load_as_of(&ids[0], AsOf::Version(Version::new(shipped_at.get() - 1)))
        .await?;
    let before_shipping = (ids[0].clone(), before.version, before.state);

    // The read model follows the global log. Subscribing (rather than reading once) waits
    // for events a store may still hold back: PostgreSQL delivers an event only once every
    // transaction that began before it has ended, so that none is ever skipped.
    let expected: usize = histories
        .iter()
        .filter(|(id, _)| *id != archived)
        .map(|(_, events)| events.len())
        .sum();
    let mut summaries = OrderSummaries::default();
    let mut seen = 0;
    let log = store.subscribe::<OrderEvent>(start, EventFilter::for_aggregate::<Order>());
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

    let forgotten = forget_first_customer(&store, &orders, &ids[0], &customers[0]).await?;

    let mut text = render(&histories, &states, &rejections, &summaries, &archived)?;
    let (id, version, state) = &before_shipping;
    writeln!(
        text,
        "\norder-{id} as it was before shipping (as of v{version}): {:?}, paid {} of {} cents, \
         shipment {:?}",
        state.status, state.paid_cents, state.total_cents, state.shipment
    )?;
    writeln!(
        text,
        "order-{archived} was archived: its history stays above, it left the read model, and \
         {refused_on_archived:?} was refused"
    )?;
    render_forgotten(&mut text, &forgotten)?;
    Ok(Report {
        order_ids: ids,
        histories,
        states,
        rejections,
        before_shipping,
        archived,
        refused_on_archived,
        summaries,
        forgotten,
        text,
    })
}

/// Forgets the customer of `order_id` (a privacy request), loading the order before and
/// after, and reads its first event as stored.
async fn forget_first_customer<S, K>(
    store: &Protected<S, K>,
    orders: &Repository<Order, Protected<S, K>>,
    order_id: &str,
    customer: &str,
) -> Result<ForgottenCustomer, Error>
where
    S: EventStore + SnapshotStore,
    K: KeyStore,
{
    let before = orders.load(order_id).await?.state;
    let record = store
        .forget(&Subject::new(customer)?, "privacy request 4711")
        .await?;
    // Its snapshot (at v3) was sealed under the customer's key, so it is of no use now:
    // the order is rebuilt from its events, whose name and address read as replaced.
    let after = orders.load(order_id).await?.state;
    let stream = orders.stream_id(order_id)?;
    let stored: Vec<_> = store
        .inner()
        .read_stream::<RawEvent>(&stream, Version::new(1))
        .try_collect()
        .await?;
    let stored = stored
        .into_iter()
        .next()
        .ok_or("the order has no first event")?
        .event
        .payload;
    Ok(ForgottenCustomer {
        order_id: order_id.to_owned(),
        before,
        after,
        record,
        stored,
    })
}

fn render_forgotten(out: &mut String, forgotten: &ForgottenCustomer) -> Result<(), Error> {
    let ForgottenCustomer {
        order_id,
        before,
        after,
        record,
        stored,
    } = forgotten;
    let show = |order: &Order| {
        format!(
            "{:?} for {} ({}) at {}, {} items, paid {} of {} cents",
            order.status,
            order.customer,
            order.customer_id,
            order.address,
            order.items.len(),
            order.paid_cents,
            order.total_cents
        )
    };
    writeln!(
        out,
        "
order-{order_id} before its customer is forgotten: {}",
        show(before)
    )?;
    writeln!(
        out,
        "{} forgotten by {:?} at {}",
        record.subject,
        record.by,
        record.at.format("%Y-%m-%d %H:%M:%S%.3f")
    )?;
    writeln!(out, "order-{order_id} after: {}", show(after))?;
    writeln!(out, "  its OrderNew as stored: {stored}")?;
    Ok(())
}

fn place(
    (customer_id, name, address): (&str, &str, &str),
    items: &[(&str, u32, i64)],
) -> OrderCommand {
    OrderCommand::Place {
        customer_id: customer_id.to_owned(),
        customer: name.to_owned(),
        address: address.to_owned(),
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
    archived: &str,
) -> Result<String, Error> {
    let mut out = String::new();
    for ((id, events), (_, state)) in histories.iter().zip(states) {
        let flow = events
            .first()
            .and_then(|e| e.metadata.correlation_id)
            .map(|c| format!(" (flow {c})"))
            .unwrap_or_default();
        writeln!(out, "order-{id}{flow}")?;
        for envelope in events {
            writeln!(
                out,
                "  v{:<2} {}  {:<9} {:<21} {}",
                envelope.version,
                envelope.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                envelope.metadata.actor.as_deref().unwrap_or("-"),
                envelope.event.event_type(),
                envelope.event.encode()?,
            )?;
        }
        let shipment = state
            .shipment
            .as_ref()
            .map(|(carrier, tracking)| format!(", shipped with {carrier} ({tracking})"))
            .unwrap_or_default();
        let archived = if id == archived { " (archived)" } else { "" };
        writeln!(
            out,
            "  state rebuilt from {} events{archived}: {:?} for {}, paid {} of {} cents{shipment}\n",
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
            "  order-{id:<10} {:<15} {:<9} {:>6} / {:>6} cents",
            summary.customer,
            format!("{:?}", summary.status),
            summary.paid_cents,
            summary.total_cents
        )?;
    }
    writeln!(out, "  revenue received: {} cents", summaries.revenue_cents)?;
    Ok(out)
}
