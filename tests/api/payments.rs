//! Payments against a real Stripe-compatible server (localstripe): checkout, the card step
//! as a browser would do it, webhooks, the worker, late payments, crashes and refunds.

use std::time::Duration;

use futures::future::join_all;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::both_backends;
use crate::helpers::*;
use crate::stripe_proxy::{CaptureProxy, Captures};

const STRIPE_KEY: &str = "sk_test_onsale_payments";
const WEBHOOK_SECRET: &str = "whsec_onsale_payments_test";

pub(crate) const START: &str = "mutation($h: ID!, $k: String) { startCheckout(holdId: $h, idempotencyKey: $k) { holdId paymentIntentId clientSecret amountCents currency } }";
pub(crate) const COMPLETE: &str = "mutation($h: ID!) { completeCheckout(holdId: $h) { id status holdId totalCents paymentIntentId seats { id status } } }";

pub(crate) fn stripe_base() -> String {
    std::env::var("TEST_STRIPE_API_BASE")
        .expect("TEST_STRIPE_API_BASE is not set: run the tests with ./scripts/test.sh, which starts localstripe")
}

pub(crate) fn payments(api_base: &str) -> Options {
    Options::default()
        .set("STRIPE_SECRET_KEY", STRIPE_KEY)
        .set("STRIPE_API_BASE", api_base)
        .set("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .set("CHECKOUT_WORKER_INTERVAL_MS", 200)
}

/// The card step, done straight against the Stripe server as Stripe.js would.
pub(crate) async fn pay(client: &reqwest::Client, intent: &str, method: &str) -> u16 {
    let base = stripe_base();
    let set = client
        .post(format!("{base}/v1/payment_intents/{intent}"))
        .bearer_auth(STRIPE_KEY)
        .form(&[("payment_method", method)])
        .send()
        .await
        .expect("set payment method");
    assert!(
        set.status().is_success(),
        "payment method set: {}",
        set.status()
    );
    client
        .post(format!("{base}/v1/payment_intents/{intent}/confirm"))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .expect("confirm")
        .status()
        .as_u16()
}

pub(crate) async fn intent_status(client: &reqwest::Client, intent: &str) -> String {
    let body: Value = client
        .get(format!("{}/v1/payment_intents/{intent}", stripe_base()))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .expect("retrieve")
        .json()
        .await
        .expect("json");
    body["status"].as_str().unwrap_or_default().to_owned()
}

/// How long the worker, Stripe and its webhooks get to settle something.
const SETTLES_WITHIN: Duration = Duration::from_secs(15);

/// Waits until the PaymentIntent's status on the Stripe server is `status`.
async fn wait_for_intent(client: &reqwest::Client, intent: &str, status: &str) {
    wait_until(
        &format!("PaymentIntent {intent} {status}"),
        SETTLES_WITHIN,
        || async { intent_status(client, intent).await == status },
    )
    .await;
}

/// Holds one seat and starts its checkout; returns (event, seats, hold id, checkout,
/// payment intent id).
pub(crate) async fn held_and_started(
    app: &TestApp,
    token: &str,
) -> (String, Vec<String>, String, Value, String) {
    let (event_id, seats) = app.create_event(1, 4).await;
    let body = app.hold_seats(token, &event_id, &[&seats[0]]).await;
    let hold_id = hold_id(&body);
    let body = app
        .gql(Some(token), START, json!({"h": hold_id, "k": "pay-1"}))
        .await;
    let checkout = data(&body, "startCheckout").clone();
    let intent = checkout["paymentIntentId"]
        .as_str()
        .expect("intent")
        .to_owned();
    (event_id, seats, hold_id, checkout, intent)
}

pub(crate) async fn bookings(app: &TestApp, token: &str) -> Vec<Value> {
    let body = app
        .gql(
            Some(token),
            "{ myBookings { id status paymentIntentId } }",
            json!({}),
        )
        .await;
    data(&body, "myBookings")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn sign(payload: &str, secret: &str, t: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{t}.{payload}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_webhook(app: &TestApp, payload: &str, signature: Option<&str>) -> u16 {
    let mut req = app
        .client
        .post(format!("{}/webhooks/stripe", app.base))
        .header("content-type", "application/json")
        .body(payload.to_owned());
    if let Some(sig) = signature {
        req = req.header("stripe-signature", sig);
    }
    req.send().await.expect("webhook").status().as_u16()
}

/// Asks localstripe to deliver its (signed) events to this app.
async fn register_webhook(app: &TestApp) {
    let id = format!("wh_{}", uuid::Uuid::new_v4().simple());
    let resp = app
        .client
        .post(format!("{}/_config/webhooks/{id}", stripe_base()))
        .bearer_auth(STRIPE_KEY)
        .form(&[
            ("url", format!("{}/webhooks/stripe", app.base)),
            ("secret", WEBHOOK_SECRET.to_owned()),
        ])
        .send()
        .await
        .expect("register webhook");
    assert!(
        resp.status().is_success(),
        "webhook registered: {}",
        resp.status()
    );
}

async fn webhooks_processed(app: &TestApp) -> bool {
    app.metrics()
        .await
        .contains(r#"onsale_webhook_results_total{result="ok"}"#)
}

both_backends!(checkout_happy_path, |backend| async move {
    let app = TestApp::spawn_with(backend, payments(&stripe_base())).await;
    register_webhook(&app).await;
    let alice = app.token("alice");
    let (event_id, seats, hold_id, checkout, intent) = held_and_started(&app, &alice).await;
    assert_eq!(checkout["holdId"], hold_id.as_str());
    assert_eq!(checkout["amountCents"], 1000);
    assert_eq!(checkout["currency"], "usd");
    assert!(
        checkout["clientSecret"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    // Retried with the same key, or without one: the same PaymentIntent.
    let again = app
        .gql(Some(&alice), START, json!({"h": hold_id, "k": "pay-1"}))
        .await;
    assert_eq!(
        data(&again, "startCheckout")["paymentIntentId"],
        intent.as_str()
    );
    let again = app.gql(Some(&alice), START, json!({"h": hold_id})).await;
    assert_eq!(
        data(&again, "startCheckout")["paymentIntentId"],
        intent.as_str()
    );
    // Payments on: confirmHold refuses a hold that costs money; someone else cannot pay it.
    assert_eq!(
        expect_error(
            &app.gql(Some(&alice), CONFIRM_HOLD, json!({"h": hold_id}))
                .await
        ),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        expect_error(
            &app.gql(Some(&app.token("bob")), START, json!({"h": hold_id}))
                .await
        ),
        "FORBIDDEN"
    );
    // Before the card step, completing is refused and changes nothing.
    assert_eq!(
        expect_error(&app.gql(Some(&alice), COMPLETE, json!({"h": hold_id})).await),
        "BAD_USER_INPUT"
    );
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "HELD");

    assert_eq!(pay(&app.client, &intent, "pm_card_visa").await, 200);
    assert_eq!(
        intent_status(&app.client, &intent).await,
        "requires_capture"
    );
    let body = app.gql(Some(&alice), COMPLETE, json!({"h": hold_id})).await;
    let booking = data(&body, "completeCheckout").clone();
    assert_eq!(booking["status"], "CONFIRMED");
    assert_eq!(booking["paymentIntentId"], intent.as_str());
    assert_eq!(booking["seats"][0]["status"], "BOOKED");
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "BOOKED");
    wait_for_intent(&app.client, &intent, "succeeded").await;
    // Completing again returns the same booking; the webhook localstripe sends after the
    // capture arrives, verifies, and changes nothing.
    let body = app.gql(Some(&alice), COMPLETE, json!({"h": hold_id})).await;
    assert_eq!(data(&body, "completeCheckout")["id"], booking["id"]);
    wait_until("localstripe's webhook is processed", SETTLES_WITHIN, || {
        webhooks_processed(&app)
    })
    .await;
    let booked = bookings(&app, &alice).await;
    assert_eq!(booked.len(), 1);
    assert_eq!(booked[0]["status"], "CONFIRMED");
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "BOOKED");
    app.stop().await;
});

/// A signed event the test makes itself (localstripe sends no event at authorisation).
fn event_for(id: &str, kind: &str, intent: &str, hold_id: &str) -> String {
    json!({
        "id": id,
        "object": "event",
        "type": kind,
        "created": chrono::Utc::now().timestamp(),
        "data": {"object": {"id": intent, "object": "payment_intent", "amount": 1000, "currency": "usd",
            "status": "requires_capture", "metadata": {"hold_id": hold_id}}}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_webhook_books_once_and_forgeries_change_nothing() {
    let app = TestApp::spawn_with(Backend::Postgres, payments(&stripe_base())).await;
    let alice = app.token("alice");
    let (event_id, seats, hold_id, _, intent) = held_and_started(&app, &alice).await;
    assert_eq!(pay(&app.client, &intent, "pm_card_visa").await, 200);
    let payload = event_for(
        &format!("evt_{}", uuid::Uuid::new_v4().simple()),
        "payment_intent.amount_capturable_updated",
        &intent,
        &hold_id,
    );
    let now = chrono::Utc::now().timestamp();

    // Forged, stale, missing: 400 and nothing changes.
    assert_eq!(
        post_webhook(
            &app,
            &payload,
            Some(&sign(&payload, "whsec_someone_else", now))
        )
        .await,
        400
    );
    assert_eq!(
        post_webhook(
            &app,
            &payload,
            Some(&sign(&payload, WEBHOOK_SECRET, now - 301))
        )
        .await,
        400
    );
    assert_eq!(post_webhook(&app, &payload, None).await, 400);
    assert_eq!(
        post_webhook(
            &app,
            &payload.replace("1000", "1"),
            Some(&sign(&payload, WEBHOOK_SECRET, now))
        )
        .await,
        400
    );
    assert!(bookings(&app, &alice).await.is_empty());
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "HELD");

    // The same signed event five times at once, then five more times: one booking.
    let sig = sign(&payload, WEBHOOK_SECRET, now);
    let codes = join_all((0..5).map(|_| post_webhook(&app, &payload, Some(&sig)))).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    for _ in 0..5 {
        assert_eq!(post_webhook(&app, &payload, Some(&sig)).await, 200);
    }
    let booked = bookings(&app, &alice).await;
    assert_eq!(booked.len(), 1, "{booked:?}");
    assert_eq!(booked[0]["status"], "CONFIRMED");
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "BOOKED");
    wait_for_intent(&app.client, &intent, "succeeded").await;
    app.stop().await;
}

/// No completeCheckout and no webhook at authorisation: the worker asks Stripe and books.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_books_a_checkout_nobody_completed() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        payments(&stripe_base()).set("CHECKOUT_RECONCILE_AFTER_SECS", 1),
    )
    .await;
    let alice = app.token("alice");
    let (event_id, seats, _hold_id, _, intent) = held_and_started(&app, &alice).await;
    assert_eq!(pay(&app.client, &intent, "pm_card_visa").await, 200);
    wait_until("the worker books it", SETTLES_WITHIN, || async {
        bookings(&app, &alice).await.len() == 1
    })
    .await;
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "BOOKED");
    wait_for_intent(&app.client, &intent, "succeeded").await;
    app.stop().await;
}

/// A declined card: the payment_failed event releases the hold; no booking, nothing charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn declined_card_releases_the_hold() {
    let app = TestApp::spawn_with(Backend::Postgres, payments(&stripe_base())).await;
    let alice = app.token("alice");
    let (event_id, seats, hold_id, _, intent) = held_and_started(&app, &alice).await;
    assert_eq!(
        pay(&app.client, &intent, "pm_card_chargeCustomerFail").await,
        402
    );
    assert_eq!(
        intent_status(&app.client, &intent).await,
        "requires_payment_method"
    );
    assert_eq!(
        expect_error(&app.gql(Some(&alice), COMPLETE, json!({"h": hold_id})).await),
        "BAD_USER_INPUT"
    );
    let payload = event_for(
        &format!("evt_{}", uuid::Uuid::new_v4().simple()),
        "payment_intent.payment_failed",
        &intent,
        &hold_id,
    );
    let sig = sign(&payload, WEBHOOK_SECRET, chrono::Utc::now().timestamp());
    assert_eq!(post_webhook(&app, &payload, Some(&sig)).await, 200);
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "AVAILABLE");
    assert_eq!(app.hold_status(&alice, &hold_id).await, "RELEASED");
    assert!(bookings(&app, &alice).await.is_empty());
    app.stop().await;
}

/// The hold runs out and someone else takes the seat before the payment lands: no booking
/// for the late payer, the authorisation is cancelled, the other hold is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_payment_is_cancelled_not_charged() {
    let app = TestApp::spawn_with(
        Backend::Postgres,
        payments(&stripe_base())
            .set("HOLD_TTL_SECS", 1)
            .set("CHECKOUT_GRACE_SECS", 1),
    )
    .await;
    let alice = app.token("alice");
    let (event_id, seats, hold_id, _, intent) = held_and_started(&app, &alice).await;
    // The hold (1 s, extended by the 1 s grace when the checkout started) runs out.
    wait_until("alice's hold runs out", SETTLES_WITHIN, || async {
        app.seat_statuses(&event_id).await[&seats[0]] == "AVAILABLE"
    })
    .await;
    let bob = app.token("bob");
    let bob_hold = crate::helpers::hold_id(&app.hold_seats(&bob, &event_id, &[&seats[0]]).await);
    assert_eq!(pay(&app.client, &intent, "pm_card_visa").await, 200);
    assert_eq!(
        expect_error(&app.gql(Some(&alice), COMPLETE, json!({"h": hold_id})).await),
        "HOLD_EXPIRED"
    );
    wait_for_intent(&app.client, &intent, "canceled").await;
    assert!(bookings(&app, &alice).await.is_empty());
    assert_eq!(app.hold_status(&bob, &bob_hold).await, "ACTIVE");
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "HELD");
    app.stop().await;
}

/// A Stripe that fails every capture, in front of localstripe: the booking is made, the
/// capture is left pending; the "crashed" server is replaced by a new one whose worker
/// finishes the capture. The booking is never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capture_interrupted_by_a_crash_is_finished_after_restart() {
    let proxy = CaptureProxy::start(stripe_base(), Captures::Refused).await;
    let app = TestApp::spawn_with(Backend::Postgres, payments(&proxy.base)).await;
    let alice = app.token("alice");
    let (event_id, seats, hold_id, _, intent) = held_and_started(&app, &alice).await;
    assert_eq!(pay(&app.client, &intent, "pm_card_visa").await, 200);
    let body = app.gql(Some(&alice), COMPLETE, json!({"h": hold_id})).await;
    assert_eq!(data(&body, "completeCheckout")["status"], "CONFIRMED");
    wait_until("a capture is tried and fails", SETTLES_WITHIN, || async {
        proxy.captures() > 0
    })
    .await;
    assert_eq!(
        intent_status(&app.client, &intent).await,
        "requires_capture",
        "capture keeps failing"
    );
    let url = app.database_url.clone();
    app.stop().await;

    let restarted = TestApp::spawn_on(&url, payments(&stripe_base())).await;
    // The failed attempts backed off; the new worker picks the capture up when it is due.
    wait_for_intent(&restarted.client, &intent, "succeeded").await;
    let booked = bookings(&restarted, &alice).await;
    assert_eq!(booked.len(), 1);
    assert_eq!(booked[0]["status"], "CONFIRMED");
    assert_eq!(
        restarted.seat_statuses(&event_id).await[&seats[0]],
        "BOOKED"
    );
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_paid_booking_refunds_it() {
    let app = TestApp::spawn_with(Backend::Postgres, payments(&stripe_base())).await;
    let alice = app.token("alice");
    let (event_id, seats, hold_id, _, intent) = held_and_started(&app, &alice).await;
    assert_eq!(pay(&app.client, &intent, "pm_card_visa").await, 200);
    let body = app.gql(Some(&alice), COMPLETE, json!({"h": hold_id})).await;
    let booking_id = data(&body, "completeCheckout")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    wait_for_intent(&app.client, &intent, "succeeded").await;
    let body = app
        .gql(Some(&alice), CANCEL_BOOKING, json!({"b": booking_id}))
        .await;
    assert!(
        ["CANCELLED", "REFUNDED"].contains(
            &data(&body, "cancelBooking")["status"]
                .as_str()
                .unwrap_or_default()
        )
    );
    assert_eq!(app.seat_statuses(&event_id).await[&seats[0]], "AVAILABLE");
    wait_until("refunded", SETTLES_WITHIN, || async {
        bookings(&app, &alice)
            .await
            .first()
            .is_some_and(|b| b["status"] == "REFUNDED")
    })
    .await;
    // Again: unchanged, and no second refund.
    let body = app
        .gql(Some(&alice), CANCEL_BOOKING, json!({"b": booking_id}))
        .await;
    assert_eq!(data(&body, "cancelBooking")["status"], "REFUNDED");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_off_answers_clearly() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let alice = app.token("alice");
    let (event_id, seats) = app.create_event(1, 2).await;
    let body = app.hold_seats(&alice, &event_id, &[&seats[0]]).await;
    let hold_id = hold_id(&body);
    assert_eq!(
        expect_error(&app.gql(Some(&alice), START, json!({"h": hold_id})).await),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        expect_error(&app.gql(Some(&alice), COMPLETE, json!({"h": hold_id})).await),
        "BAD_USER_INPUT"
    );
    let status = post_webhook(&app, "{}", Some("t=1,v1=00")).await;
    assert_eq!(status, 404);
    app.stop().await;
}
