//! Signed outbound webhooks, received by a real HTTP server the test runs: each body and
//! signature checked, retries after failures, SSRF refusals, disabled endpoints, rotated
//! secrets, admin only.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::backoffice_connections::book;
use crate::both_backends;
use crate::helpers::*;
use crate::payments::{COMPLETE, held_and_started, pay, payments, stripe_base};

const CREATE: &str = "mutation($url: String!, $events: [String!]!) {
  createWebhookEndpoint(url: $url, events: $events) { id url events secret enabled } }";
const UPDATE: &str = "mutation($id: ID!, $url: String, $events: [String!], $enabled: Boolean) {
  updateWebhookEndpoint(id: $id, url: $url, events: $events, enabled: $enabled) { id url events secret enabled } }";
const ROTATE: &str = "mutation($id: ID!) { rotateWebhookSecret(id: $id) { id secret } }";
const DELETE: &str = "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) }";
const ENDPOINTS: &str = "{ webhookEndpoints { id url events secret enabled } }";
const DELIVERIES: &str = "query($id: ID!, $first: Int, $after: String) {
  webhookDeliveries(endpointId: $id, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { cursor node { id endpointId webhookEventId eventType attempts status lastStatusCode nextAttemptAt createdAt } } } }";
const SET_STATUS: &str =
    "mutation($id: ID!, $s: EventStatus!) { setEventStatus(id: $id, status: $s) { status } }";

/// How long a webhook gets to arrive.
const ARRIVES_WITHIN: Duration = Duration::from_secs(20);

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    signature: String,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// Whether the signature is `secret`'s HMAC of `t.body`, with `t` recent.
    fn signed_with(&self, secret: &str) -> bool {
        let Some((t, v1)) = self
            .signature
            .split_once(',')
            .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
        else {
            return false;
        };
        let fresh = t.parse::<i64>().is_ok_and(|t| (now() - t).abs() <= 300);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(format!("{t}.{}", self.body).as_bytes());
        fresh && hex::encode(mac.finalize().into_bytes()) == v1
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// Statuses to answer, in order; then 200.
    answers: VecDeque<u16>,
}

/// An HTTP server on 127.0.0.1 that records every POST and answers as scripted.
#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    async fn start(answers: &[u16]) -> Self {
        let state = Arc::new(Mutex::new(ReceiverState {
            received: Vec::new(),
            answers: answers.iter().copied().collect(),
        }));
        async fn hook(
            State(state): State<Arc<Mutex<ReceiverState>>>,
            headers: HeaderMap,
            body: String,
        ) -> StatusCode {
            let mut state = state.lock().expect("receiver state");
            state.received.push(Received {
                signature: headers
                    .get("onsale-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                body,
            });
            let code = state.answers.pop_front().unwrap_or(200);
            StatusCode::from_u16(code).expect("a status")
        }
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, state }
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().expect("receiver state").received.clone()
    }

    /// Waits until `n` requests have arrived; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        wait_for(
            &format!("{n} webhook request(s)"),
            ARRIVES_WITHIN,
            || async {
                let got = self.received();
                (got.len() >= n).then_some(got)
            },
        )
        .await
    }
}

/// An app that may call the test's receiver, retrying quickly.
async fn webhook_app(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, webhook_options(Options::default())).await
}

pub(crate) fn webhook_options(options: Options) -> Options {
    options
        .set("WEBHOOK_ALLOW_PRIVATE", "true")
        .set("WEBHOOK_RETRY_BASE_MS", 50)
        .set("WEBHOOK_WORKER_INTERVAL_MS", 50)
}

/// Registers `url` for `events`; returns (id, secret).
pub(crate) async fn endpoint(app: &TestApp, url: &str, events: Value) -> (String, String) {
    let body = app
        .gql(
            Some(&app.admin_token()),
            CREATE,
            json!({"url": url, "events": events}),
        )
        .await;
    let created = data(&body, "createWebhookEndpoint");
    assert_eq!(created["enabled"], true);
    (
        created["id"].as_str().expect("id").to_owned(),
        created["secret"].as_str().expect("a secret").to_owned(),
    )
}

async fn deliveries(app: &TestApp, endpoint_id: &str) -> Value {
    let body = app
        .gql(
            Some(&app.admin_token()),
            DELIVERIES,
            json!({"id": endpoint_id}),
        )
        .await;
    data(&body, "webhookDeliveries").clone()
}

/// Waits until every delivery of the endpoint is DELIVERED and there are `n`; returns them.
async fn wait_delivered(app: &TestApp, endpoint_id: &str, n: usize) -> Vec<Value> {
    wait_for(&format!("{n} delivered"), ARRIVES_WITHIN, || async {
        let page = deliveries(app, endpoint_id).await;
        let nodes: Vec<Value> = page["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["node"].clone())
            .collect();
        (nodes.len() == n && nodes.iter().all(|d| d["status"] == "DELIVERED")).then_some(nodes)
    })
    .await
}

both_backends!(
    webhook_booking_confirmed_is_signed_and_sent_once,
    |backend| async move {
        let app = webhook_app(backend).await;
        let receiver = Receiver::start(&[]).await;
        let (id, secret) = endpoint(&app, &receiver.url, json!(["booking.confirmed"])).await;
        let (event_id, seats) = app.create_event(1, 4).await;
        let booking_id = book(&app, "alice", &event_id, &seats[0]).await;

        let got = receiver.wait_for(1).await;
        assert!(
            got[0].signed_with(&secret),
            "signature {}",
            got[0].signature
        );
        let body = got[0].json();
        assert_eq!(body["type"], "booking.confirmed");
        assert!(body["id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(
            chrono::DateTime::parse_from_rfc3339(body["createdAt"].as_str().expect("createdAt"))
                .is_ok()
        );
        let d = &body["data"];
        assert_eq!(d["id"], booking_id.as_str());
        assert_eq!(d["eventId"], event_id.as_str());
        assert_eq!(d["userId"], "alice");
        assert_eq!(d["status"], "CONFIRMED");
        assert_eq!(d["totalCents"], 1000);
        assert_eq!(d["seatIds"], json!([seats[0]]));
        assert_eq!(d["areas"], json!([]));
        assert!(chrono::DateTime::parse_from_rfc3339(d["createdAt"].as_str().expect("at")).is_ok());
        let delivered = wait_delivered(&app, &id, 1).await;
        assert_eq!(delivered[0]["attempts"], 1);
        assert_eq!(delivered[0]["lastStatusCode"], 200);
        assert_eq!(delivered[0]["eventType"], "booking.confirmed");
        assert_eq!(delivered[0]["webhookEventId"], body["id"]);
        assert_eq!(delivered[0]["nextAttemptAt"], Value::Null);

        // Not subscribed to cancellations; the next confirmation is the second request.
        let body = app
            .gql(
                Some(&app.token("alice")),
                CANCEL_BOOKING,
                json!({"b": booking_id}),
            )
            .await;
        assert_eq!(data(&body, "cancelBooking")["status"], "CANCELLED");
        let second = book(&app, "bob", &event_id, &seats[1]).await;
        wait_delivered(&app, &id, 2).await;
        let got = receiver.received();
        assert_eq!(got.len(), 2, "one request per event: {got:?}");
        assert_eq!(got[1].json()["data"]["id"], second.as_str());
        assert_ne!(got[0].json()["id"], got[1].json()["id"]);
        app.stop().await;
    }
);

both_backends!(
    webhook_failing_endpoint_is_retried_until_a_2xx_then_never_again,
    |backend| async move {
        let app = webhook_app(backend).await;
        let receiver = Receiver::start(&[500, 500, 503]).await;
        let (id, secret) = endpoint(&app, &receiver.url, json!([])).await;
        let (event_id, seats) = app.create_event(1, 4).await;
        book(&app, "alice", &event_id, &seats[0]).await;

        let delivered = wait_delivered(&app, &id, 1).await;
        assert_eq!(delivered[0]["attempts"], 4);
        assert_eq!(delivered[0]["lastStatusCode"], 200);
        let got = receiver.received();
        assert_eq!(got.len(), 4);
        let first = got[0].json();
        for attempt in &got {
            assert!(attempt.signed_with(&secret));
            assert_eq!(
                attempt.body, got[0].body,
                "every attempt sends the same body"
            );
        }
        assert_eq!(first["type"], "booking.confirmed");

        // A later event arrives after it, and the delivered one is not sent again.
        let body = app
            .gql(
                Some(&app.admin_token()),
                SET_STATUS,
                json!({"id": event_id, "s": "PAUSED"}),
            )
            .await;
        assert_eq!(data(&body, "setEventStatus")["status"], "PAUSED");
        wait_delivered(&app, &id, 2).await;
        let got = receiver.received();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[4].json()["type"], "event.status_changed");
        app.stop().await;
    }
);

both_backends!(
    webhook_types_carry_their_data_and_deliveries_page,
    |backend| async move {
        let app = webhook_app(backend).await;
        let receiver = Receiver::start(&[]).await;
        let (id, secret) = endpoint(&app, &receiver.url, json!([])).await;
        let (event_id, seats) = app.create_event(1, 4).await;
        let booking_id = book(&app, "alice", &event_id, &seats[2]).await;
        receiver.wait_for(1).await;
        app.gql(
            Some(&app.token("alice")),
            CANCEL_BOOKING,
            json!({"b": booking_id}),
        )
        .await;
        receiver.wait_for(2).await;
        let admin = app.admin_token();
        app.gql(
            Some(&admin),
            SET_STATUS,
            json!({"id": event_id, "s": "PAUSED"}),
        )
        .await;
        // Setting the current status again changes nothing and tells nobody.
        app.gql(
            Some(&admin),
            SET_STATUS,
            json!({"id": event_id, "s": "PAUSED"}),
        )
        .await;
        receiver.wait_for(3).await;
        app.gql(
            Some(&admin),
            SET_STATUS,
            json!({"id": event_id, "s": "ON_SALE"}),
        )
        .await;
        let got = receiver.wait_for(4).await;
        let bodies: Vec<Value> = got
            .iter()
            .inspect(|r| assert!(r.signed_with(&secret)))
            .map(Received::json)
            .collect();
        assert_eq!(bodies[0]["type"], "booking.confirmed");
        assert_eq!(bodies[1]["type"], "booking.cancelled");
        assert_eq!(bodies[1]["data"]["id"], booking_id.as_str());
        assert_eq!(bodies[1]["data"]["status"], "CANCELLED");
        assert_eq!(bodies[1]["data"]["seatIds"], json!([seats[2]]));
        assert_eq!(bodies[2]["type"], "event.status_changed");
        assert_eq!(
            bodies[2]["data"],
            json!({"eventId": event_id, "from": "ON_SALE", "to": "PAUSED"})
        );
        assert_eq!(
            bodies[3]["data"],
            json!({"eventId": event_id, "from": "PAUSED", "to": "ON_SALE"})
        );
        wait_delivered(&app, &id, 4).await;
        assert_eq!(receiver.received().len(), 4);

        // The deliveries page newest first by cursor.
        let page = |after: Value| {
            let admin = admin.clone();
            let id = id.clone();
            let app = &app;
            async move {
                let body = app
                    .gql(
                        Some(&admin),
                        DELIVERIES,
                        json!({"id": id, "first": 3, "after": after}),
                    )
                    .await;
                data(&body, "webhookDeliveries").clone()
            }
        };
        let first = page(Value::Null).await;
        assert_eq!(first["totalCount"], 4);
        assert_eq!(first["pageInfo"]["hasNextPage"], true);
        let second = page(first["pageInfo"]["endCursor"].clone()).await;
        assert_eq!(second["pageInfo"]["hasNextPage"], false);
        let mut seen: Vec<Value> = first["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .chain(second["edges"].as_array().expect("edges"))
            .map(|e| e["node"]["webhookEventId"].clone())
            .collect();
        assert_eq!(seen.len(), 4);
        assert_eq!(
            seen[3], bodies[0]["id"],
            "newest first: the first event last"
        );
        seen.sort_by_key(Value::to_string);
        seen.dedup();
        assert_eq!(seen.len(), 4);
        let body = app
            .gql(Some(&admin), DELIVERIES, json!({"id": id, "first": 501}))
            .await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT");
        app.stop().await;
    }
);

/// An app with the production address rules (no `WEBHOOK_ALLOW_PRIVATE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_urls_to_private_addresses_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.admin_token();
    for url in [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:169.254.169.254]/latest",
        "https://localhost/hook",
        "http://93.184.216.34/hook",
        "not a url",
    ] {
        let body = app
            .gql(Some(&admin), CREATE, json!({"url": url, "events": []}))
            .await;
        assert_eq!(expect_error(&body), "BAD_USER_INPUT", "{url}: {body}");
    }
    let body = app
        .gql(
            Some(&admin),
            CREATE,
            json!({"url": "https://93.184.216.34/hook", "events": ["booking.nonsense"]}),
        )
        .await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    // A public address is taken; moving it to a private one is refused and changes nothing.
    let body = app
        .gql(
            Some(&admin),
            CREATE,
            json!({"url": "https://93.184.216.34/hook", "events": ["event.status_changed"]}),
        )
        .await;
    let id = data(&body, "createWebhookEndpoint")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let body = app
        .gql(
            Some(&admin),
            UPDATE,
            json!({"id": id, "url": "https://10.0.0.1/hook"}),
        )
        .await;
    assert_eq!(expect_error(&body), "BAD_USER_INPUT");
    let body = app.gql(Some(&admin), ENDPOINTS, json!({})).await;
    assert_eq!(
        data(&body, "webhookEndpoints"),
        &json!([{"id": id, "url": "https://93.184.216.34/hook", "events": ["event.status_changed"],
                 "secret": null, "enabled": true}])
    );
    app.stop().await;
}

both_backends!(
    webhook_disabled_endpoint_gets_nothing,
    |backend| async move {
        let app = webhook_app(backend).await;
        let (off, on) = (Receiver::start(&[]).await, Receiver::start(&[]).await);
        let (off_id, _) = endpoint(&app, &off.url, json!([])).await;
        let (on_id, _) = endpoint(&app, &on.url, json!([])).await;
        let body = app
            .gql(
                Some(&app.admin_token()),
                UPDATE,
                json!({"id": off_id, "enabled": false}),
            )
            .await;
        let updated = data(&body, "updateWebhookEndpoint");
        assert_eq!(updated["enabled"], false);
        assert_eq!(updated["secret"], Value::Null);
        assert_eq!(updated["url"], off.url.as_str());
        let (event_id, seats) = app.create_event(1, 4).await;
        book(&app, "alice", &event_id, &seats[0]).await;
        book(&app, "bob", &event_id, &seats[1]).await;
        wait_delivered(&app, &on_id, 2).await;
        assert_eq!(on.received().len(), 2);
        assert_eq!(off.received().len(), 0);
        assert_eq!(deliveries(&app, &off_id).await["totalCount"], 0);

        // Deleted: gone from the list, its deliveries with it.
        let admin = app.admin_token();
        let body = app.gql(Some(&admin), DELETE, json!({"id": on_id})).await;
        assert_eq!(data(&body, "deleteWebhookEndpoint"), true);
        let body = app.gql(Some(&admin), DELETE, json!({"id": on_id})).await;
        assert_eq!(expect_error(&body), "NOT_FOUND");
        let body = app
            .gql(Some(&admin), DELIVERIES, json!({"id": on_id}))
            .await;
        assert_eq!(expect_error(&body), "NOT_FOUND");
        let body = app.gql(Some(&admin), ENDPOINTS, json!({})).await;
        assert_eq!(
            data(&body, "webhookEndpoints").as_array().map(Vec::len),
            Some(1)
        );
        app.stop().await;
    }
);

both_backends!(
    webhook_rotated_secret_signs_later_deliveries,
    |backend| async move {
        let app = webhook_app(backend).await;
        let receiver = Receiver::start(&[]).await;
        let (id, old) = endpoint(&app, &receiver.url, json!(["booking.confirmed"])).await;
        let (event_id, seats) = app.create_event(1, 4).await;
        book(&app, "alice", &event_id, &seats[0]).await;
        let got = receiver.wait_for(1).await;
        assert!(got[0].signed_with(&old));

        let body = app
            .gql(Some(&app.admin_token()), ROTATE, json!({"id": id}))
            .await;
        let new = data(&body, "rotateWebhookSecret")["secret"]
            .as_str()
            .expect("a new secret")
            .to_owned();
        assert_ne!(new, old);
        assert!(new.starts_with("whsec_"));
        book(&app, "bob", &event_id, &seats[1]).await;
        let got = receiver.wait_for(2).await;
        assert!(got[1].signed_with(&new));
        assert!(!got[1].signed_with(&old));
        let body = app
            .gql(Some(&app.admin_token()), ENDPOINTS, json!({}))
            .await;
        assert_eq!(data(&body, "webhookEndpoints")[0]["secret"], Value::Null);
        app.stop().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_endpoints_are_for_admins_only() {
    let app = webhook_app(Backend::Sqlite).await;
    let receiver = Receiver::start(&[]).await;
    let (id, _) = endpoint(&app, &receiver.url, json!([])).await;
    let customer = app.token("eve");
    let calls = [
        (CREATE, json!({"url": receiver.url, "events": []})),
        (UPDATE, json!({"id": id, "enabled": false})),
        (ROTATE, json!({"id": id})),
        (DELETE, json!({"id": id})),
        (ENDPOINTS, json!({})),
        (DELIVERIES, json!({"id": id})),
    ];
    for (query, vars) in &calls {
        let body = app.gql(Some(&customer), query, vars.clone()).await;
        assert_eq!(expect_error(&body), "FORBIDDEN", "{query}");
        let body = app.gql(None, query, vars.clone()).await;
        assert_eq!(expect_error(&body), "UNAUTHENTICATED", "{query}");
    }
    // Nothing changed: still enabled, still there, one endpoint.
    let body = app
        .gql(Some(&app.admin_token()), ENDPOINTS, json!({}))
        .await;
    let list = data(&body, "webhookEndpoints");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["enabled"], true);
    app.stop().await;
}

/// A paid booking cancelled: confirmed, cancelled, then refunded once Stripe gave the money
/// back, each sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_paid_booking_tells_confirmed_cancelled_refunded() {
    let app =
        TestApp::spawn_with(Backend::Postgres, webhook_options(payments(&stripe_base()))).await;
    let receiver = Receiver::start(&[]).await;
    let (id, secret) = endpoint(&app, &receiver.url, json!([])).await;
    let alice = app.token("alice");
    let (_, seats, hold_id, _, intent) = held_and_started(&app, &alice).await;
    assert_eq!(pay(&app.client, &intent, "pm_card_visa").await, 200);
    let body = app.gql(Some(&alice), COMPLETE, json!({"h": hold_id})).await;
    let booking_id = data(&body, "completeCheckout")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    receiver.wait_for(1).await;
    // Wait for the capture before cancelling, so the money goes back as a refund.
    wait_until("captured", ARRIVES_WITHIN, || async {
        crate::payments::intent_status(&app.client, &intent).await == "succeeded"
    })
    .await;
    app.gql(Some(&alice), CANCEL_BOOKING, json!({"b": booking_id}))
        .await;
    let got = receiver.wait_for(3).await;
    wait_delivered(&app, &id, 3).await;
    let bodies: Vec<Value> = got.iter().map(Received::json).collect();
    // The last two may be attempted in the same pass, in either order.
    let mut types: Vec<&str> = bodies
        .iter()
        .map(|b| b["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(types[0], "booking.confirmed");
    types.sort_unstable();
    assert_eq!(
        types,
        ["booking.cancelled", "booking.confirmed", "booking.refunded"]
    );
    for (received, body) in got.iter().zip(&bodies) {
        assert!(received.signed_with(&secret));
        assert_eq!(body["data"]["id"], booking_id.as_str());
        assert_eq!(body["data"]["seatIds"], json!([seats[0]]));
    }
    let refunded = bodies
        .iter()
        .find(|b| b["type"] == "booking.refunded")
        .expect("booking.refunded");
    assert_eq!(refunded["data"]["status"], "REFUNDED");
    assert_eq!(receiver.received().len(), 3);
    app.stop().await;
}

/// A receiver that stalls every request (never a 2xx) until told to answer 200, then records
/// the body id of each 200 it gives.
#[derive(Clone, Default)]
struct StallingReceiver {
    stalling: Arc<std::sync::atomic::AtomicBool>,
    stalled: Arc<Mutex<usize>>,
    delivered: Arc<Mutex<Vec<String>>>,
}

impl StallingReceiver {
    async fn start(&self) -> String {
        self.stalling
            .store(true, std::sync::atomic::Ordering::SeqCst);
        async fn hook(State(r): State<StallingReceiver>, body: String) -> StatusCode {
            if r.stalling.load(std::sync::atomic::Ordering::SeqCst) {
                *r.stalled.lock().expect("count") += 1;
                // Longer than the attempt's timeout: the sender gives up, nothing is delivered.
                tokio::time::sleep(Duration::from_secs(10)).await;
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            let id = serde_json::from_str::<Value>(&body).expect("json")["id"]
                .as_str()
                .expect("id")
                .to_owned();
            r.delivered.lock().expect("ids").push(id);
            StatusCode::OK
        }
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        url
    }
}

/// GraphQL against a child process.
async fn child_gql(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    vars: Value,
) -> Value {
    client
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": vars}))
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("a JSON answer")
}

/// 100 events recorded, the instance killed with -9 while attempts (leased) are in flight and
/// none delivered; another instance delivers all 100 after the leases run out, each event id
/// answered 2xx exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_events_survive_a_killed_instance_and_are_delivered_once() {
    use crate::procs::OnsaleProcess;
    onsale::payment::install_crypto_provider();
    let database_url = fresh_pg_database().await;
    let settings = [
        ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ("WEBHOOK_TIMEOUT_MS", "1000"),
        ("WEBHOOK_RETRY_BASE_MS", "50"),
        ("WEBHOOK_WORKER_INTERVAL_MS", "50"),
        ("RATE_LIMIT_USER_PER_SEC", "0"),
    ];
    let receiver = StallingReceiver::default();
    let url = receiver.start().await;
    let mut first = OnsaleProcess::start(&database_url, None, free_port(), &settings).await;
    let client = reqwest::Client::new();
    let jwt = onsale::auth::Jwt::new(JWT_SECRET, 0);
    let admin = jwt.issue("admin", true, 3600).expect("token");
    let body = child_gql(
        &client,
        &first.base,
        &admin,
        CREATE,
        json!({"url": url, "events": ["booking.confirmed"]}),
    )
    .await;
    let endpoint_id = data(&body, "createWebhookEndpoint")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let input = ops::EventInput::rows(
        "Crash Night",
        "Hall",
        "2030-01-01T20:00:00Z",
        "Main",
        [(100, 1000)],
    );
    let body = child_gql(
        &client,
        &first.base,
        &admin,
        ops::CREATE_EVENT,
        ops::vars::create_event(&input),
    )
    .await;
    let event_id = data(&body, "createEvent")["id"]
        .as_str()
        .expect("event id")
        .to_owned();
    let body = child_gql(
        &client,
        &first.base,
        &admin,
        ops::SEAT_STATUSES,
        ops::vars::event(&event_id),
    )
    .await;
    let seats = ops::SeatStatuses::from_json(data(&body, "seatMap"))
        .expect("a seat map")
        .order;
    assert_eq!(seats.len(), 100);
    for (i, seat) in seats.iter().enumerate() {
        let token = jwt
            .issue(&format!("buyer-{i}"), false, 3600)
            .expect("token");
        let body = child_gql(
            &client,
            &first.base,
            &token,
            HOLD_SEATS,
            ops::vars::seats(&event_id, &[seat]),
        )
        .await;
        let hold = hold_id(&body);
        let body = child_gql(
            &client,
            &first.base,
            &token,
            CONFIRM_HOLD,
            json!({"h": hold, "k": null}),
        )
        .await;
        assert_eq!(data(&body, "confirmHold")["status"], "CONFIRMED");
    }
    // Attempts are in flight (leased, stalled) when the instance dies.
    let db = sea_orm::Database::connect(database_url.as_str())
        .await
        .expect("connect");
    let leased = || async {
        use sea_orm::{ConnectionTrait, Statement};
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE leased_by IS NOT NULL",
            ))
            .await
            .expect("count leases")
            .expect("a row");
        row.try_get::<i64>("", "n").expect("n")
    };
    wait_until("attempts in flight", ARRIVES_WITHIN, || async {
        *receiver.stalled.lock().expect("count") >= 2 && leased().await > 0
    })
    .await;
    first.kill();
    assert!(leased().await > 0, "the killed instance left leases");
    assert!(receiver.delivered.lock().expect("ids").is_empty());
    receiver
        .stalling
        .store(false, std::sync::atomic::Ordering::SeqCst);

    let second = OnsaleProcess::start(&database_url, None, free_port(), &settings).await;
    wait_until("all 100 delivered", Duration::from_secs(60), || async {
        receiver.delivered.lock().expect("ids").len() >= 100
    })
    .await;
    let body = child_gql(
        &client,
        &second.base,
        &admin,
        DELIVERIES,
        json!({"id": endpoint_id, "first": 500}),
    )
    .await;
    let page = data(&body, "webhookDeliveries");
    assert_eq!(page["totalCount"], 100);
    wait_until("every delivery DELIVERED", ARRIVES_WITHIN, || async {
        let body = child_gql(
            &client,
            &second.base,
            &admin,
            DELIVERIES,
            json!({"id": endpoint_id, "first": 500}),
        )
        .await;
        data(&body, "webhookDeliveries")["edges"]
            .as_array()
            .is_some_and(|e| e.len() == 100 && e.iter().all(|e| e["node"]["status"] == "DELIVERED"))
    })
    .await;
    let mut ids = receiver.delivered.lock().expect("ids").clone();
    assert_eq!(ids.len(), 100, "one 2xx per event");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100, "100 different events");
}

both_backends!(
    webhook_migration_goes_down_and_up_again,
    |backend| async move {
        use migration::{Migrator, MigratorTrait};
        use sea_orm::ConnectionTrait;
        let url = match backend {
            Backend::Postgres => fresh_pg_database().await,
            Backend::Sqlite => fresh_sqlite_database(),
        };
        let conn = sea_orm::Database::connect(url.as_str())
            .await
            .expect("connect");
        Migrator::up(&conn, None).await.expect("up");
        let tables = ["webhook_deliveries", "webhook_events", "webhook_endpoints"];
        let count = |table: &'static str| {
            let conn = &conn;
            async move {
                conn.execute_unprepared(&format!("SELECT COUNT(*) FROM {table}"))
                    .await
                    .is_ok()
            }
        };
        for table in tables {
            assert!(count(table).await, "{table} exists after up");
        }
        // Only the newest migration is this one in this branch; find how far back it is.
        let applied = Migrator::get_applied_migrations(&conn)
            .await
            .expect("applied");
        let back = applied
            .iter()
            .rev()
            .position(|m| m.name() == "m20261202_000012_webhooks")
            .expect("the webhook migration is applied")
            + 1;
        Migrator::down(&conn, Some(back as u32))
            .await
            .expect("down");
        for table in tables {
            assert!(!count(table).await, "{table} is gone after down");
        }
        Migrator::up(&conn, None).await.expect("up again");
        for table in tables {
            assert!(count(table).await, "{table} exists again");
        }
    }
);

both_backends!(
    webhook_check_in_tells_ticket_checked_in_once,
    |backend| async move {
        let app = webhook_app(backend).await;
        let receiver = Receiver::start(&[]).await;
        let (id, secret) = endpoint(&app, &receiver.url, json!(["ticket.checked_in"])).await;
        let (event_id, seats) = app.create_event(1, 4).await;
        let token = app.token("alice");
        let hold = hold_id(&app.hold_seats(&token, &event_id, &[&seats[0]]).await);
        let body = app
            .gql(
                Some(&token),
                "mutation($h: ID!) { confirmHold(holdId: $h) { id tickets { id code } } }",
                json!({"h": hold}),
            )
            .await;
        let booking = data(&body, "confirmHold");
        let ticket = &booking["tickets"][0];
        let check_in = "mutation($c: String!, $e: ID!) { checkIn(code: $c, eventId: $e) { ticket { id checkedInAt } } }";
        let vars = json!({"c": ticket["code"], "e": event_id});
        let first = app
            .gql(Some(&app.admin_token()), check_in, vars.clone())
            .await;
        let checked = &data(&first, "checkIn")["ticket"];
        // A second scan is refused and tells nobody.
        let again = app.gql(Some(&app.admin_token()), check_in, vars).await;
        assert_eq!(error_code(&again).as_deref(), Some("ALREADY_CHECKED_IN"));

        let got = receiver.wait_for(1).await;
        assert!(got[0].signed_with(&secret));
        let body = got[0].json();
        assert_eq!(body["type"], "ticket.checked_in");
        let d = &body["data"];
        assert_eq!(d["ticketId"], ticket["id"]);
        assert_eq!(d["bookingId"], booking["id"]);
        assert_eq!(d["eventId"], event_id.as_str());
        let sent = chrono::DateTime::parse_from_rfc3339(d["checkedInAt"].as_str().expect("at"))
            .expect("RFC 3339");
        let answered =
            chrono::DateTime::parse_from_rfc3339(checked["checkedInAt"].as_str().expect("at"))
                .expect("RFC 3339");
        assert_eq!(
            sent, answered,
            "the webhook carries the check-in's own time"
        );
        wait_delivered(&app, &id, 1).await;
        assert_eq!(receiver.received().len(), 1, "one check-in, one request");
        app.stop().await;
    }
);
