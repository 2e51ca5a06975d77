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

    assert_eq!(report.summaries.orders.len(), 4);
    assert_eq!(report.summaries.revenue_cents, 3_400 + 7_900 + 2_500);
    for (id, state) in &report.states {
        let summary = &report.summaries.orders[id];
        assert_eq!(
            summary.status, state.status,
            "read model agrees with order {id}"
        );
        assert_eq!(summary.paid_cents, state.paid_cents);
    }

    assert!(report.text.contains("OrderShipped"));
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
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let pool = sqlx::PgPool::connect(&url).await.unwrap_or_else(|error| {
        panic!("no PostgreSQL server answers at {url} ({error}); run ./scripts/ensure-postgres")
    });
    let schema = format!("es_test_orders_{}", uuid::Uuid::now_v7().simple());
    let store = es_postgres::PgEventStore::builder(pool.clone())
        .schema(&schema)
        .unwrap()
        .build();
    store.migrate().await.unwrap();

    let report = scenario::run(store).await.unwrap();
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

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
}
