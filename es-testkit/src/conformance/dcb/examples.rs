//! The examples of the Dynamic Consistency Boundary specification (dcb.events), each as a
//! decision written with the raw store API: read what the rule depends on with
//! `read_query`, fold it, decide, and append with `append_if` on the condition that
//! nothing the query selects came after the last event read.

use es_core::{AppendError, Position, Query, QueryItem};

use super::{DcbEvent, DecisionRead, put_one, query_now, read_stream, stream, tag};
use es_core::Store;

/// Why a decision appended nothing.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// A business rule said no.
    Rule(&'static str),
    /// The facts changed after the decision read them: the condition failed.
    Stale,
}

/// Commits a decided event, mapping a failed condition to [`Refused::Stale`].
async fn commit<S: Store, T>(
    store: &S,
    decision: &DecisionRead<T>,
    stream: &es_core::StreamId,
    event: DcbEvent,
) -> Result<(), Refused> {
    match decision.commit(store, stream, event).await {
        Ok(_) => Ok(()),
        Err(AppendError::ConditionFailed { .. }) => Err(Refused::Stale),
        Err(other) => panic!("the append to `{stream}` failed: {other:?}"),
    }
}

/// The most courses one student may take.
const MAX_COURSES: u32 = 2;

/// What subscribing a student to a course depends on.
#[derive(Debug, Default)]
struct Enrolment {
    defined: bool,
    capacity: u32,
    subscribers: u32,
    already: bool,
    courses_of_student: u32,
}

/// Reads what subscribing `student` to `course` depends on: two items with two different
/// tags, the course's events and the student's subscriptions.
async fn read_enrolment<S: Store>(
    store: &S,
    student: &str,
    course: &str,
) -> DecisionRead<Enrolment> {
    let query = Query::from(
        QueryItem::new()
            .with_types([
                "CourseDefined",
                "CourseCapacityChanged",
                "StudentSubscribed",
            ])
            .with_tag(tag(&format!("course:{course}"))),
    )
    .or(QueryItem::new()
        .with_types(["StudentSubscribed"])
        .with_tag(tag(&format!("student:{student}"))));
    DecisionRead::read(
        store,
        query,
        Enrolment::default(),
        |state, event| match event {
            DcbEvent::CourseDefined {
                course: c,
                capacity,
            } if c == course => {
                state.defined = true;
                state.capacity = *capacity;
            }
            DcbEvent::CourseCapacityChanged {
                course: c,
                capacity,
            } if c == course => {
                state.capacity = *capacity;
            }
            DcbEvent::StudentSubscribed {
                student: s,
                course: c,
            } => {
                // One event may match both items; the store delivers it once.
                if c == course {
                    state.subscribers += 1;
                    state.already |= s == student;
                }
                if s == student {
                    state.courses_of_student += 1;
                }
            }
            _ => {}
        },
    )
    .await
}

/// Subscribes `student` to `course` if the rules allow it, on what `decision` read.
async fn enrol_on<S: Store>(
    store: &S,
    decision: &DecisionRead<Enrolment>,
    student: &str,
    course: &str,
) -> Result<(), Refused> {
    let state = &decision.state;
    if !state.defined {
        return Err(Refused::Rule("no such course"));
    }
    if state.already {
        return Err(Refused::Rule("already subscribed"));
    }
    if state.subscribers >= state.capacity {
        return Err(Refused::Rule("course full"));
    }
    if state.courses_of_student >= MAX_COURSES {
        return Err(Refused::Rule("too many courses"));
    }
    let event = DcbEvent::StudentSubscribed {
        student: student.into(),
        course: course.into(),
    };
    commit(store, decision, &stream("student", student), event).await
}

/// Reads and decides at once.
async fn enrol<S: Store>(store: &S, student: &str, course: &str) -> Result<(), Refused> {
    let decision = read_enrolment(store, student, course).await;
    enrol_on(store, &decision, student, course).await
}

/// Defines `course` taking `capacity` students.
async fn define<S: Store>(store: &S, course: &str, capacity: u32) {
    let event = DcbEvent::CourseDefined {
        course: course.into(),
        capacity,
    };
    put_one(store, &stream("course", course), event).await;
}

/// Course subscriptions (dcb.events, "Course subscriptions"): a course takes at most its
/// capacity (which may change) and a student at most two courses, a rule over
/// two entities that no single aggregate holds. A decision made on stale facts fails,
/// whether the course (first item) or the student (second item) changed, and succeeds
/// when only unrelated events came in between.
pub async fn dcb_course_subscriptions<S: Store>(store: S) {
    assert_eq!(
        enrol(&store, "s1", "c1").await,
        Err(Refused::Rule("no such course"))
    );
    define(&store, "c1", 2).await;
    define(&store, "c2", 2).await;
    define(&store, "c3", 1).await;
    define(&store, "c4", 5).await;

    assert_eq!(enrol(&store, "s1", "c1").await, Ok(()));
    assert_eq!(
        enrol(&store, "s1", "c1").await,
        Err(Refused::Rule("already subscribed"))
    );
    assert_eq!(enrol(&store, "s2", "c1").await, Ok(()));
    assert_eq!(
        enrol(&store, "s3", "c1").await,
        Err(Refused::Rule("course full"))
    );
    let changed = DcbEvent::CourseCapacityChanged {
        course: "c1".into(),
        capacity: 3,
    };
    put_one(&store, &stream("course", "c1"), changed).await;
    assert_eq!(
        enrol(&store, "s3", "c1").await,
        Ok(()),
        "the capacity change counts"
    );

    assert_eq!(enrol(&store, "s1", "c2").await, Ok(()));
    assert_eq!(
        enrol(&store, "s1", "c4").await,
        Err(Refused::Rule("too many courses"))
    );

    // The course changed: two students decide on the last seat of c3.
    let s4 = read_enrolment(&store, "s4", "c3").await;
    let s5 = read_enrolment(&store, "s5", "c3").await;
    assert_eq!(enrol_on(&store, &s4, "s4", "c3").await, Ok(()));
    assert_eq!(enrol_on(&store, &s5, "s5", "c3").await, Err(Refused::Stale));
    assert_eq!(
        enrol(&store, "s5", "c3").await,
        Err(Refused::Rule("course full"))
    );

    // The student changed: s2 (one course) decides on c2 and on c4 at once.
    let to_c2 = read_enrolment(&store, "s2", "c2").await;
    let to_c4 = read_enrolment(&store, "s2", "c4").await;
    assert_eq!(enrol_on(&store, &to_c2, "s2", "c2").await, Ok(()));
    assert_eq!(
        enrol_on(&store, &to_c4, "s2", "c4").await,
        Err(Refused::Stale)
    );
    assert_eq!(
        enrol(&store, "s2", "c4").await,
        Err(Refused::Rule("too many courses"))
    );

    // Only other courses and students changed: the decision stands.
    let s6 = read_enrolment(&store, "s6", "c4").await;
    assert_eq!(
        enrol(&store, "s7", "c2").await,
        Err(Refused::Rule("course full"))
    );
    assert_eq!(
        enrol(&store, "s7", "c1").await,
        Err(Refused::Rule("course full"))
    );
    put_one(
        &store,
        &stream("course", "c5"),
        DcbEvent::CourseDefined {
            course: "c5".into(),
            capacity: 1,
        },
    )
    .await;
    assert_eq!(enrol(&store, "s7", "c5").await, Ok(()));
    assert_eq!(enrol_on(&store, &s6, "s6", "c4").await, Ok(()));

    for (course, expected) in [("c1", 3), ("c2", 2), ("c3", 1), ("c4", 1), ("c5", 1)] {
        let query = Query::from(
            QueryItem::new()
                .with_types(["StudentSubscribed"])
                .with_tag(tag(&format!("course:{course}"))),
        );
        assert_eq!(
            query_now(&store, &query, Position::START).await.len(),
            expected,
            "subscriptions to {course}"
        );
    }
}

/// Who holds a username, if anyone.
#[derive(Debug, Default)]
struct Claim {
    holder: Option<String>,
}

/// Reads who holds `username`.
async fn read_claim<S: Store>(store: &S, username: &str) -> DecisionRead<Claim> {
    let query = QueryItem::new()
        .with_types(["AccountRegistered", "AccountClosed"])
        .with_tag(tag(&format!("username:{username}")))
        .into();
    DecisionRead::read(store, query, Claim::default(), |state, event| match event {
        DcbEvent::AccountRegistered { account, .. } => state.holder = Some(account.clone()),
        DcbEvent::AccountClosed { .. } => state.holder = None,
        _ => {}
    })
    .await
}

/// Registers `account` with `username` if no open account holds it, on what `decision`
/// read.
async fn register_on<S: Store>(
    store: &S,
    decision: &DecisionRead<Claim>,
    account: &str,
    username: &str,
) -> Result<(), Refused> {
    if decision.state.holder.is_some() {
        return Err(Refused::Rule("username taken"));
    }
    let event = DcbEvent::AccountRegistered {
        account: account.into(),
        username: username.into(),
    };
    commit(store, decision, &stream("account", account), event).await
}

/// Reads and decides at once.
async fn register<S: Store>(store: &S, account: &str, username: &str) -> Result<(), Refused> {
    let decision = read_claim(store, username).await;
    register_on(store, &decision, account, username).await
}

/// Unique username (dcb.events, "Unique username"): a name is held by at most one open
/// account, across every account stream, and can be claimed again once its account is
/// closed. Two accounts claiming a new name at once both read nothing (no position): the
/// second fails on the first's event.
pub async fn dcb_unique_username<S: Store>(store: S) {
    assert_eq!(register(&store, "a1", "ada").await, Ok(()));
    assert_eq!(
        register(&store, "a2", "ada").await,
        Err(Refused::Rule("username taken"))
    );
    assert_eq!(register(&store, "a2", "bob").await, Ok(()));

    let a3 = read_claim(&store, "cy").await;
    let a4 = read_claim(&store, "cy").await;
    assert_eq!(a3.after, None, "nobody claimed the name yet");
    assert_eq!(register_on(&store, &a3, "a3", "cy").await, Ok(()));
    assert_eq!(
        register_on(&store, &a4, "a4", "cy").await,
        Err(Refused::Stale)
    );
    assert_eq!(
        register(&store, "a4", "cy").await,
        Err(Refused::Rule("username taken"))
    );

    let closed = DcbEvent::AccountClosed {
        account: "a1".into(),
        username: "ada".into(),
    };
    put_one(&store, &stream("account", "a1"), closed).await;
    assert_eq!(
        register(&store, "a5", "ada").await,
        Ok(()),
        "a released name is free"
    );
    assert_eq!(
        register(&store, "a6", "ada").await,
        Err(Refused::Rule("username taken"))
    );
    assert!(
        read_stream(&store, &stream("account", "a4"))
            .await
            .is_empty()
    );
    assert_eq!(
        read_claim(&store, "ada").await.state.holder.as_deref(),
        Some("a5")
    );
}

/// The last invoice number issued (0 before the first).
#[derive(Debug, Default)]
struct Numbering {
    last: u64,
}

/// Reads the invoices issued: a query of one type and no tags.
async fn read_numbering<S: Store>(store: &S) -> DecisionRead<Numbering> {
    let query = QueryItem::new().with_types(["InvoiceCreated"]).into();
    DecisionRead::read(store, query, Numbering::default(), |state, event| {
        if let DcbEvent::InvoiceCreated { number } = event {
            state.last = *number;
        }
    })
    .await
}

/// Issues the next invoice on what `decision` read, returning its number.
async fn issue_on<S: Store>(store: &S, decision: &DecisionRead<Numbering>) -> Result<u64, Refused> {
    let number = decision.state.last + 1;
    let event = DcbEvent::InvoiceCreated { number };
    commit(
        store,
        decision,
        &stream("invoice", &number.to_string()),
        event,
    )
    .await?;
    Ok(number)
}

/// Reads and issues at once.
async fn issue<S: Store>(store: &S) -> Result<u64, Refused> {
    let decision = read_numbering(store).await;
    issue_on(store, &decision).await
}

/// Invoice numbers without gaps (dcb.events, "Invoice number"): a type-only query reads
/// every invoice; the next number is the last plus one, and a second creation decided
/// on the same numbers fails (and stores nothing) rather than issuing a number twice.
/// Events of other types do not disturb it.
pub async fn dcb_invoice_numbers_without_gaps<S: Store>(store: S) {
    assert_eq!(issue(&store).await, Ok(1));
    assert_eq!(issue(&store).await, Ok(2));
    define(&store, "c1", 1).await;
    assert_eq!(issue(&store).await, Ok(3));

    let first = read_numbering(&store).await;
    let second = read_numbering(&store).await;
    assert_eq!(issue_on(&store, &first).await, Ok(4));
    assert_eq!(issue_on(&store, &second).await, Err(Refused::Stale));
    assert_eq!(
        read_stream(&store, &stream("invoice", "4")).await.len(),
        1,
        "the failed creation stored nothing"
    );
    assert_eq!(issue(&store).await, Ok(5));

    let unrelated = read_numbering(&store).await;
    define(&store, "c2", 1).await;
    assert_eq!(
        issue_on(&store, &unrelated).await,
        Ok(6),
        "another type came in between"
    );

    let numbers: Vec<u64> = query_now(&store, &read_numbering(&store).await.query, Position::START)
        .await
        .into_iter()
        .map(|e| match e.event {
            DcbEvent::InvoiceCreated { number } => number,
            other => panic!("the query selected {other:?}"),
        })
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
}

/// Where a sign-up with a token is.
#[derive(Debug, Default)]
struct SignUp {
    initiated: bool,
    confirmed: bool,
}

/// Reads the sign-up of `token`.
async fn read_sign_up<S: Store>(store: &S, token: &str) -> DecisionRead<SignUp> {
    let query = QueryItem::new()
        .with_types(["SignUpInitiated", "SignUpConfirmed"])
        .with_tag(tag(&format!("token:{token}")))
        .into();
    DecisionRead::read(
        store,
        query,
        SignUp::default(),
        |state, event| match event {
            DcbEvent::SignUpInitiated { .. } => state.initiated = true,
            DcbEvent::SignUpConfirmed { .. } => state.confirmed = true,
            _ => {}
        },
    )
    .await
}

/// Confirms the sign-up of `token` on what `decision` read.
async fn confirm_on<S: Store>(
    store: &S,
    decision: &DecisionRead<SignUp>,
    token: &str,
) -> Result<(), Refused> {
    if !decision.state.initiated {
        return Err(Refused::Rule("unknown token"));
    }
    if decision.state.confirmed {
        return Err(Refused::Rule("token already used"));
    }
    let event = DcbEvent::SignUpConfirmed {
        token: token.into(),
    };
    commit(store, decision, &stream("signup", token), event).await
}

/// Reads and confirms at once.
async fn confirm<S: Store>(store: &S, token: &str) -> Result<(), Refused> {
    let decision = read_sign_up(store, token).await;
    confirm_on(store, &decision, token).await
}

/// Opt-in token (dcb.events, "Opt-In Token"): a sign-up is confirmed with the one-time
/// token it was sent, once; an unknown token is refused, a second confirmation is refused,
/// and of two confirmations decided at once the second fails on the first.
pub async fn dcb_opt_in_token<S: Store>(store: S) {
    for (token, email) in [("t1", "ada@example.com"), ("t2", "bob@example.com")] {
        let event = DcbEvent::SignUpInitiated {
            token: token.into(),
            email: email.into(),
        };
        put_one(&store, &stream("signup", token), event).await;
    }
    assert_eq!(
        confirm(&store, "t9").await,
        Err(Refused::Rule("unknown token"))
    );
    assert_eq!(confirm(&store, "t1").await, Ok(()));
    assert_eq!(
        confirm(&store, "t1").await,
        Err(Refused::Rule("token already used"))
    );

    let first = read_sign_up(&store, "t2").await;
    let second = read_sign_up(&store, "t2").await;
    assert_eq!(confirm_on(&store, &first, "t2").await, Ok(()));
    assert_eq!(confirm_on(&store, &second, "t2").await, Err(Refused::Stale));
    assert_eq!(
        confirm(&store, "t2").await,
        Err(Refused::Rule("token already used"))
    );
    assert_eq!(read_stream(&store, &stream("signup", "t2")).await.len(), 2);
}
