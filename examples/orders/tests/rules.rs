//! The order rules, as given/when/then.

use es_core::testing::{AggregateTestExt as _, ProjectionFixture};
use orders::{
    LineItem, Order, OrderCommand, OrderError, OrderEvent, OrderStatus, OrderSummaries,
    OrderSummary,
};

fn placed(total_cents: i64) -> OrderEvent {
    OrderEvent::Placed {
        customer_id: "customer-1".into(),
        customer: "ada".into(),
        address: "1 Main Street".into(),
        items: vec![LineItem::new("BOOK", 1, total_cents)],
        total_cents,
    }
}

fn place(items: Vec<LineItem>) -> OrderCommand {
    OrderCommand::Place {
        customer_id: "customer-1".into(),
        customer: "ada".into(),
        address: "1 Main Street".into(),
        items,
    }
}

fn paid(amount_cents: i64) -> OrderEvent {
    OrderEvent::PaymentReceived {
        amount_cents,
        reference: format!("psp-{amount_cents}"),
    }
}

fn preparing() -> OrderEvent {
    OrderEvent::Preparing {
        warehouse: "berlin".into(),
    }
}

fn ship() -> OrderCommand {
    OrderCommand::Ship {
        carrier: "dhl".into(),
        tracking_number: "JD01".into(),
    }
}

#[test]
fn placing_totals_the_lines() {
    Order::test()
        .given_no_previous_events()
        .when(place(vec![
            LineItem::new("BOOK", 2, 1_250),
            LineItem::new("MUG", 1, 900),
        ]))
        .then_expect_events([OrderEvent::Placed {
            customer_id: "customer-1".into(),
            customer: "ada".into(),
            address: "1 Main Street".into(),
            items: vec![
                LineItem::new("BOOK", 2, 1_250),
                LineItem::new("MUG", 1, 900),
            ],
            total_cents: 3_400,
        }]);
}

#[test]
fn an_order_needs_items() {
    Order::test()
        .given_no_previous_events()
        .when(place(vec![]))
        .then_expect_error(OrderError::NoItems);
}

#[test]
fn lines_need_a_quantity() {
    Order::test()
        .given_no_previous_events()
        .when(place(vec![LineItem::new("BOOK", 0, 100)]))
        .then_expect_error(OrderError::InvalidItem { sku: "BOOK".into() });
}

#[test]
fn an_order_is_placed_once() {
    Order::test()
        .given([placed(500)])
        .when(place(vec![LineItem::new("BOOK", 1, 500)]))
        .then_expect_error(OrderError::AlreadyPlaced);
}

#[test]
fn nothing_happens_to_an_order_never_placed() {
    Order::test()
        .given_no_previous_events()
        .when(ship())
        .then_expect_error(OrderError::NotPlaced);
}

#[test]
fn payments_may_come_in_parts() {
    Order::test()
        .given([placed(500), paid(200)])
        .when(OrderCommand::ReceivePayment {
            amount_cents: 300,
            reference: "psp-300".into(),
        })
        .then_expect_state(|order| {
            assert_eq!(order.status, OrderStatus::Paid);
            assert_eq!(order.due_cents(), 0);
        });
}

#[test]
fn paying_more_than_due_is_rejected() {
    Order::test()
        .given([placed(500), paid(200)])
        .when(OrderCommand::ReceivePayment {
            amount_cents: 301,
            reference: "psp-301".into(),
        })
        .then_expect_error(OrderError::Overpayment {
            due_cents: 300,
            received_cents: 301,
        });
}

#[test]
fn a_payment_must_be_positive() {
    Order::test()
        .given([placed(500)])
        .when(OrderCommand::ReceivePayment {
            amount_cents: 0,
            reference: "psp-0".into(),
        })
        .then_expect_error(OrderError::InvalidAmount);
}

#[test]
fn a_paid_order_takes_no_more_payments() {
    Order::test()
        .given([placed(500), paid(500)])
        .when(OrderCommand::ReceivePayment {
            amount_cents: 1,
            reference: "psp-1".into(),
        })
        .then_expect_error(OrderError::AlreadyPaid);
}

#[test]
fn cannot_ship_an_unpaid_order() {
    Order::test()
        .given([placed(500), paid(100)])
        .when(ship())
        .then_expect_error(OrderError::NotPaid { due_cents: 400 });
}

#[test]
fn cannot_prepare_an_unpaid_order() {
    Order::test()
        .given([placed(500)])
        .when(OrderCommand::StartPreparing {
            warehouse: "berlin".into(),
        })
        .then_expect_error_matching(|e| matches!(e, OrderError::NotPaid { due_cents: 500 }));
}

#[test]
fn a_paid_order_is_prepared() {
    Order::test()
        .given([placed(500), paid(500)])
        .when(OrderCommand::StartPreparing {
            warehouse: "berlin".into(),
        })
        .then_expect_events([preparing()]);
}

#[test]
fn a_paid_order_is_prepared_before_it_ships() {
    Order::test()
        .given([placed(500), paid(500)])
        .when(ship())
        .then_expect_error(OrderError::NotPreparing);
}

#[test]
fn a_prepared_order_ships() {
    Order::test()
        .given([placed(500), paid(500), preparing()])
        .when(ship())
        .then_expect_events([OrderEvent::Shipped {
            carrier: "dhl".into(),
            tracking_number: "JD01".into(),
        }]);
}

#[test]
fn an_order_ships_once() {
    Order::test()
        .given([
            placed(500),
            paid(500),
            preparing(),
            OrderEvent::Shipped {
                carrier: "dhl".into(),
                tracking_number: "JD01".into(),
            },
        ])
        .when(ship())
        .then_expect_error(OrderError::AlreadyShipped);
}

#[test]
fn a_free_order_is_paid_when_placed() {
    Order::test()
        .given([placed(0)])
        .when(OrderCommand::StartPreparing {
            warehouse: "berlin".into(),
        })
        .then_expect_events([preparing()]);
}

#[test]
fn the_read_model_follows_every_order() {
    ProjectionFixture::new(OrderSummaries::default())
        .given("order-1", [placed(500), paid(500), preparing()])
        .given("order-2", [placed(300), paid(100)])
        .then_expect(
            |view| view.clone(),
            OrderSummaries {
                orders: [
                    (
                        "1".to_owned(),
                        OrderSummary {
                            customer: "ada".into(),
                            status: OrderStatus::Preparing,
                            total_cents: 500,
                            paid_cents: 500,
                        },
                    ),
                    (
                        "2".to_owned(),
                        OrderSummary {
                            customer: "ada".into(),
                            status: OrderStatus::Placed,
                            total_cents: 300,
                            paid_cents: 100,
                        },
                    ),
                ]
                .into(),
                revenue_cents: 600,
            },
        );
}

#[test]
fn a_forgotten_customer_leaves_the_order_whole() {
    Order::test()
        .given([placed(500), paid(500)])
        .given_forgotten("customer-1")
        .when(OrderCommand::StartPreparing {
            warehouse: "berlin".into(),
        })
        .then_expect_state(|order| {
            assert_eq!(order.customer, "(forgotten)");
            assert_eq!(order.address, "(forgotten)");
            assert_eq!(order.customer_id, "customer-1");
            assert_eq!(order.status, OrderStatus::Preparing);
            assert_eq!(order.paid_cents, 500);
            assert_eq!(order.items, [LineItem::new("BOOK", 1, 500)]);
        });
}

#[test]
fn the_read_model_shows_a_forgotten_customer_as_replaced() {
    ProjectionFixture::new(OrderSummaries::default())
        .given_forgotten("customer-1")
        .given("order-1", [placed(500), paid(500)])
        .then_expect(
            |view| view.orders["1"].clone(),
            OrderSummary {
                customer: "(forgotten)".into(),
                status: OrderStatus::Paid,
                total_cents: 500,
                paid_cents: 500,
            },
        );
}
