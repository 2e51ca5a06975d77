//! The example's scenario, run on the in-memory store.

use es_memory::MemoryEventStore;
use orders::{OrderCommand, OrderError, OrderStatus, scenario};

#[tokio::test]
async fn scenario_plays_the_whole_lifecycle() {
    let report = scenario::run(MemoryEventStore::new()).await.unwrap();

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
}

/// The same scenario on PostgreSQL (`DATABASE_URL`, or the local server), in a schema of
/// its own.
#[tokio::test]
async fn scenario_runs_on_postgres() {
    let store = es_testkit::postgres::fresh_store().await;

    let report = scenario::run(store.clone()).await.unwrap();
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

    es_testkit::postgres::drop_schema(store).await;
}
