//! The example's scenario, run on the in-memory store and on PostgreSQL, each over a
//! [`Protected`] store.

use es_core::personal::{LocalKeyEncryption, MemoryKeyStore, Protected};
use es_memory::MemoryEventStore;
use es_postgres::PgKeyStore;
use orders::scenario::{ForgottenCustomer, Report};
use orders::{OrderCommand, OrderError, OrderStatus, scenario};

fn in_memory() -> Protected<MemoryEventStore, MemoryKeyStore> {
    Protected::new(MemoryEventStore::new(), MemoryKeyStore::new())
}

/// After the first order's customer is forgotten, its name and address read as the
/// replacement, the rest of the order as before, and the stored event holds ciphertext in
/// their place, never the name or the address.
fn assert_forgotten(report: &Report) {
    let ForgottenCustomer {
        order_id,
        before,
        after,
        record,
        stored,
    } = &report.forgotten;
    assert_eq!(order_id, &report.order_ids[0]);
    assert_eq!(before.customer, "Ada Lovelace");
    assert_eq!(before.address, "12 St James's Square, London");
    assert_eq!(after.customer, "(forgotten)");
    assert_eq!(after.address, "(forgotten)");
    assert_eq!(after.customer_id, before.customer_id);
    assert_eq!(after.status, OrderStatus::Shipped);
    assert_eq!(after.items, before.items);
    assert_eq!(after.total_cents, before.total_cents);
    assert_eq!(after.paid_cents, before.paid_cents);
    assert_eq!(after.warehouse, before.warehouse);
    assert_eq!(after.shipment, before.shipment);
    assert_eq!(record.subject.as_str(), before.customer_id);
    assert_eq!(record.by, "privacy request 4711");

    let text = stored.to_string();
    for personal in ["Ada", "Lovelace", "St James"] {
        assert!(!text.contains(personal), "{personal} is stored: {text}");
    }
    assert_eq!(stored["customer"]["es:personal"], 1, "{text}");
    assert_eq!(stored["address"]["es:personal"], 1, "{text}");
    assert_eq!(stored["customer_id"], before.customer_id.as_str());
    assert_eq!(stored["total_cents"], 3_400);
    assert!(
        report
            .text
            .contains("after: Shipped for (forgotten) (customer-"),
        "{}",
        report.text
    );
}

#[tokio::test]
async fn scenario_plays_the_whole_lifecycle() {
    let report = scenario::run(in_memory()).await.unwrap();

    let types: Vec<Vec<&str>> = report
        .histories
        .iter()
        .map(|(_, events)| {
            events
                .iter()
                .map(|e| es_core::DomainEvent::event_type(&e.event))
                .collect()
        })
        .collect();
    assert_eq!(
        types,
        [
            vec![
                "OrderNew",
                "OrderPaymentReceived",
                "OrderPreparing",
                "OrderShipped"
            ],
            vec![
                "OrderNew",
                "OrderPaymentReceived",
                "OrderPaymentReceived",
                "OrderPreparing"
            ],
            vec!["OrderNew"],
            vec!["OrderNew", "OrderPaymentReceived"],
        ]
    );
    for (_, events) in &report.histories {
        let versions: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
    }

    let statuses: Vec<OrderStatus> = report.states.iter().map(|(_, s)| s.status).collect();
    assert_eq!(
        statuses,
        [
            OrderStatus::Shipped,
            OrderStatus::Preparing,
            OrderStatus::Placed,
            OrderStatus::Paid
        ]
    );

    assert_eq!(report.rejections.len(), 2);
    assert!(matches!(report.rejections[0].1, OrderCommand::Ship { .. }));
    assert_eq!(
        report.rejections[0].2,
        OrderError::NotPaid { due_cents: 1_497 }
    );
    assert_eq!(
        report.rejections[1].2,
        OrderError::Overpayment {
            due_cents: 2_500,
            received_cents: 3_000
        }
    );

    // Order 3 was archived: it left the read model, and took no more commands.
    assert_eq!(report.archived, report.order_ids[2]);
    assert!(!report.summaries.orders.contains_key(&report.archived));
    assert_eq!(report.summaries.orders.len(), 3);
    assert!(matches!(
        report.refused_on_archived,
        OrderCommand::ReceivePayment { .. }
    ));
    assert_eq!(report.summaries.revenue_cents, 3_400 + 7_900 + 2_500);
    for (id, state) in report
        .states
        .iter()
        .filter(|(id, _)| *id != report.archived)
    {
        let summary = &report.summaries.orders[id];
        assert_eq!(
            summary.status, state.status,
            "read model agrees with order {id}"
        );
        assert_eq!(summary.paid_cents, state.paid_cents);
    }

    // The shipped order as it was just before shipping.
    let (id, version, before) = &report.before_shipping;
    assert_eq!(id, &report.order_ids[0]);
    assert_eq!(version.get(), 3);
    assert_eq!(before.status, OrderStatus::Preparing);
    assert_eq!(before.paid_cents, 3_400);
    assert_eq!(before.shipment, None);

    // Every event says who caused it, and an order's events share one flow.
    let (_, first) = &report.histories[0];
    let actors: Vec<_> = first
        .iter()
        .map(|e| e.metadata.actor.as_deref().unwrap())
        .collect();
    assert_eq!(actors, ["shop-web", "psp", "warehouse", "warehouse"]);
    let flows: Vec<_> = report
        .histories
        .iter()
        .map(|(_, events)| {
            let flow = events[0].metadata.correlation_id.unwrap();
            assert!(
                events
                    .iter()
                    .all(|e| e.metadata.correlation_id == Some(flow))
            );
            flow
        })
        .collect();
    assert!(flows.windows(2).all(|w| w[0] != w[1]), "one flow per order");

    assert!(report.text.contains("OrderShipped"));
    assert!(
        report
            .text
            .contains("as it was before shipping (as of v3): Preparing")
    );
    assert!(
        report
            .text
            .contains("the order is not paid: 1497 cents still due")
    );
    // The read model was built before the forgetting, with the names.
    assert_eq!(
        report.summaries.orders[&report.order_ids[1]].customer,
        "Grace Hopper"
    );
    assert_forgotten(&report);
}

/// Only the forgotten customer's data is gone: the other orders still read their names.
#[tokio::test]
async fn forgetting_one_customer_leaves_the_others_readable() {
    let store = in_memory();
    let report = scenario::run(store.clone()).await.unwrap();
    let orders = es_core::Repository::<orders::Order, _>::new(store);
    let grace = orders.load(&report.order_ids[1]).await.unwrap().state;
    assert_eq!(grace.customer, "Grace Hopper");
    assert_eq!(grace.address, "1 Navy Yard, Arlington");
    let ada = orders.load(&report.order_ids[0]).await.unwrap().state;
    assert_eq!(ada.customer, "(forgotten)");
}

/// The same scenario on PostgreSQL (`DATABASE_URL`, or the local server), in a schema of
/// its own.
#[tokio::test]
async fn scenario_runs_on_postgres() {
    let store = es_testkit::postgres::fresh_store().await;
    let master = LocalKeyEncryption::from_base64(&LocalKeyEncryption::generate_secret()).unwrap();
    let keys = PgKeyStore::new(&store, master);

    let report = scenario::run(Protected::new(store.clone(), keys))
        .await
        .unwrap();
    let statuses: Vec<OrderStatus> = report.states.iter().map(|(_, s)| s.status).collect();
    assert_eq!(
        statuses,
        [
            OrderStatus::Shipped,
            OrderStatus::Preparing,
            OrderStatus::Placed,
            OrderStatus::Paid
        ]
    );
    assert_eq!(report.rejections.len(), 2);
    assert_eq!(report.summaries.revenue_cents, 3_400 + 7_900 + 2_500);
    assert_eq!(report.summaries.orders.len(), 3, "the archived order left");
    assert_eq!(report.before_shipping.1.get(), 3);
    assert_eq!(report.before_shipping.2.status, OrderStatus::Preparing);
    assert_eq!(
        report.histories[0].1[3].metadata.actor.as_deref(),
        Some("warehouse")
    );
    assert_forgotten(&report);

    es_testkit::postgres::drop_schema(store).await;
}
