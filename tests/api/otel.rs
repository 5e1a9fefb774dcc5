//! OpenTelemetry traces: the real binary (its tracing subscriber is process-wide) exporting to a
//! small OTLP/HTTP receiver started here, which decodes what arrives as a collector would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::{Value, json};

use crate::helpers::{HOLD_SEATS, JWT_SECRET, data, free_port, fresh_sqlite_database, ops};
use crate::procs::OnsaleProcess;

/// One span as the receiver got it, ids in lower-case hex.
#[derive(Clone, Debug)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// An OTLP/HTTP trace receiver on loopback: `POST /v1/traces` with a protobuf body.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// Export requests answered, well-formed or not.
    posts: Arc<Mutex<usize>>,
}

impl Receiver {
    /// Serves on `addr` in the background; `None` if the address is taken.
    async fn start_on(&self, addr: &str) -> Option<String> {
        // The tests' reqwest clients take their TLS from the process-wide provider.
        onsale::payment::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
        let base = format!("http://{}", listener.local_addr().ok()?);
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Some(base)
    }

    async fn start(&self) -> String {
        self.start_on("127.0.0.1:0")
            .await
            .expect("a loopback port for the receiver")
    }

    fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("not poisoned").clone()
    }

    fn posts(&self) -> usize {
        *self.posts.lock().expect("not poisoned")
    }

    /// The spans of `trace_id`, once one named `name` is among them.
    async fn wait_for_span(&self, trace_id: &str, name: &str) -> Vec<ReceivedSpan> {
        crate::helpers::wait_for(
            &format!("a span {name:?} of trace {trace_id}"),
            Duration::from_secs(10),
            || async {
                let spans: Vec<_> = self
                    .spans()
                    .into_iter()
                    .filter(|s| s.trace_id == trace_id)
                    .collect();
                spans.iter().any(|s| s.name == name).then_some(spans)
            },
        )
        .await
    }
}

async fn export(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    *receiver.posts.lock().expect("not poisoned") += 1;
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
    // The exporter compresses only when told to (OTEL_EXPORTER_OTLP_COMPRESSION); it is not.
    let plain = headers.get(header::CONTENT_ENCODING).is_none();
    if !protobuf || !plain {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut spans = receiver.spans.lock().expect("not poisoned");
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(ReceivedSpan {
                service: service.clone(),
                name: span.name,
                trace_id: hex::encode(span.trace_id),
                span_id: hex::encode(span.span_id),
                parent_span_id: hex::encode(span.parent_span_id),
            });
        }
    }
    let answer = ExportTraceServiceResponse {
        partial_success: None,
    };
    (StatusCode::OK, answer.encode_to_vec())
}

/// A caller's trace: random ids, as a W3C `traceparent` (sampled).
struct CallerTrace {
    trace_id: String,
    span_id: String,
}

impl CallerTrace {
    fn new() -> Self {
        Self {
            trace_id: uuid::Uuid::new_v4().simple().to_string(),
            span_id: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
        }
    }

    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// An event of four seats, created over the API; answers its id and seat ids.
async fn event_with_seats(child: &OnsaleProcess, admin: &str) -> (String, Vec<String>) {
    let input = ops::EventInput::rows(
        "Trace Night",
        "Hall",
        "2030-01-01T20:00:00Z",
        "Main",
        [(4, 1000)],
    );
    let body = gql(
        child,
        admin,
        None,
        ops::CREATE_EVENT,
        ops::vars::create_event(&input),
    )
    .await;
    let event_id = data(&body, "createEvent")["id"]
        .as_str()
        .expect("event id")
        .to_owned();
    let body = gql(
        child,
        admin,
        None,
        ops::SEAT_STATUSES,
        ops::vars::event(&event_id),
    )
    .await;
    let seats = ops::SeatStatuses::from_json(data(&body, "seatMap"))
        .expect("a seat map")
        .order;
    (event_id, seats)
}

async fn gql(
    child: &OnsaleProcess,
    token: &str,
    traceparent: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let mut request = reqwest::Client::new()
        .post(format!("{}/graphql", child.base))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    request
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("a JSON answer")
}

fn tokens() -> (String, String) {
    let jwt = onsale::auth::Jwt::new(JWT_SECRET, 0);
    (
        jwt.issue("admin", true, 3600).expect("token"),
        jwt.issue("buyer-1", false, 3600).expect("token"),
    )
}

/// Holds a seat as a caller whose trace is `caller`; asserts the hold was made.
async fn hold_in_trace(child: &OnsaleProcess, caller: &CallerTrace) {
    let (admin, buyer) = tokens();
    let (event_id, seats) = event_with_seats(child, &admin).await;
    let body = gql(
        child,
        &buyer,
        Some(&caller.traceparent()),
        HOLD_SEATS,
        ops::vars::seats(&event_id, &seats[..1]),
    )
    .await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE", "{body}");
}

/// Whether `span` descends from the span `ancestor` within `spans`.
fn descends_from(spans: &[ReceivedSpan], span: &ReceivedSpan, ancestor: &str) -> bool {
    let mut parent = span.parent_span_id.as_str();
    for _ in 0..spans.len() {
        if parent == ancestor {
            return true;
        }
        match spans.iter().find(|s| s.span_id == parent) {
            Some(next) => parent = &next.parent_span_id,
            None => return false,
        }
    }
    false
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, a request carrying `traceparent` is exported as a
/// span of the caller's trace whose parent is the caller's span, and the booking service's
/// `hold_seats` span is exported beneath it, under the default service name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_spans_join_the_callers_trace() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let mut child = OnsaleProcess::start(
        &fresh_sqlite_database(),
        None,
        free_port(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RATE_LIMIT_USER_PER_SEC", "0"),
        ],
    )
    .await;
    let caller = CallerTrace::new();
    hold_in_trace(&child, &caller).await;

    let spans = receiver.wait_for_span(&caller.trace_id, "hold_seats").await;
    let request = spans
        .iter()
        .find(|s| s.name == "POST /graphql")
        .unwrap_or_else(|| panic!("the request span is exported: {spans:#?}"));
    assert_eq!(
        request.parent_span_id, caller.span_id,
        "the request span's parent is the caller's span"
    );
    let hold = spans
        .iter()
        .find(|s| s.name == "hold_seats")
        .expect("waited for");
    assert!(
        descends_from(&spans, hold, &request.span_id),
        "hold_seats runs within the request span: {spans:#?}"
    );
    assert!(
        spans.iter().all(|s| s.service == "onsale"),
        "service.name defaults to onsale: {spans:#?}"
    );
    // Requests without `traceparent` start traces of their own.
    assert!(
        receiver
            .spans()
            .iter()
            .any(|s| s.name == "create_event" && s.trace_id != caller.trace_id),
        "createEvent was traced on its own"
    );
    let status = child.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exits cleanly: {status}");
}

/// A stand-in for Stripe's API that answers PaymentIntents and keeps the `traceparent` each
/// request carried.
#[derive(Clone, Default)]
struct FakeStripe {
    traceparents: Arc<Mutex<Vec<Option<String>>>>,
}

impl FakeStripe {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the fake Stripe");
        let base = format!("http://{}", listener.local_addr().expect("bound"));
        let app = axum::Router::new()
            .route(
                "/v1/payment_intents",
                axum::routing::post(
                    |State(stripe): State<FakeStripe>, headers: HeaderMap| async move {
                        let traceparent = headers
                            .get("traceparent")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        stripe
                            .traceparents
                            .lock()
                            .expect("not poisoned")
                            .push(traceparent);
                        axum::Json(json!({
                            "id": "pi_trace_1",
                            "status": "requires_payment_method",
                            "amount": 1000,
                            "currency": "usd",
                            "client_secret": "pi_trace_1_secret_x",
                        }))
                    },
                ),
            )
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        base
    }
}

/// The Stripe call made while starting a checkout carries `traceparent` naming its own span,
/// in the caller's trace, so Stripe's side (or a proxy's) lines up with onsale's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_calls_carry_the_trace_onwards() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let stripe = FakeStripe::default();
    let stripe_base = stripe.start().await;
    let mut child = OnsaleProcess::start(
        &fresh_sqlite_database(),
        None,
        free_port(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RATE_LIMIT_USER_PER_SEC", "0"),
            ("STRIPE_SECRET_KEY", "sk_test_trace"),
            ("STRIPE_API_BASE", stripe_base.as_str()),
        ],
    )
    .await;
    let (admin, buyer) = tokens();
    let (event_id, seats) = event_with_seats(&child, &admin).await;
    let body = gql(
        &child,
        &buyer,
        None,
        HOLD_SEATS,
        ops::vars::seats(&event_id, &seats[..1]),
    )
    .await;
    let hold = crate::helpers::hold_id(&body);
    let caller = CallerTrace::new();
    let body = gql(
        &child,
        &buyer,
        Some(&caller.traceparent()),
        crate::payments::START,
        json!({"h": hold, "k": null}),
    )
    .await;
    assert_eq!(
        data(&body, "startCheckout")["paymentIntentId"],
        "pi_trace_1",
        "{body}"
    );

    let spans = receiver
        .wait_for_span(&caller.trace_id, "stripe.create_payment_intent")
        .await;
    let stripe_span = spans
        .iter()
        .find(|s| s.name == "stripe.create_payment_intent")
        .expect("waited for");
    let sent = stripe.traceparents.lock().expect("not poisoned").clone();
    assert_eq!(
        sent,
        [Some(format!(
            "00-{}-{}-01",
            caller.trace_id, stripe_span.span_id
        ))],
        "Stripe was called once, with the trace and the span of that call"
    );
    let checkout = spans
        .iter()
        .find(|s| s.name == "start_checkout")
        .unwrap_or_else(|| panic!("start_checkout is exported: {spans:#?}"));
    assert!(
        descends_from(&spans, stripe_span, &checkout.span_id),
        "the Stripe call runs within start_checkout: {spans:#?}"
    );
    let status = child.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exits cleanly: {status}");
}

/// Spans still queued when the instance is told to stop (SIGTERM) are exported before it
/// exits, even with a batch delay far longer than the test; `OTEL_SERVICE_NAME` names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_spans_are_exported_on_graceful_shutdown() {
    let receiver = Receiver::default();
    let endpoint = receiver.start().await;
    let mut child = OnsaleProcess::start(
        &fresh_sqlite_database(),
        None,
        free_port(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_SERVICE_NAME", "onsale-eu-1"),
            ("RATE_LIMIT_USER_PER_SEC", "0"),
        ],
    )
    .await;
    let caller = CallerTrace::new();
    hold_in_trace(&child, &caller).await;
    assert_eq!(
        receiver.posts(),
        0,
        "nothing exported before the batch delay"
    );

    let status = child.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exits cleanly: {status}");
    let spans: Vec<_> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == caller.trace_id)
        .collect();
    assert!(
        spans.iter().any(|s| s.name == "hold_seats"),
        "the hold's spans were flushed at exit: {spans:#?}"
    );
    assert!(
        spans.iter().all(|s| s.service == "onsale-eu-1"),
        "OTEL_SERVICE_NAME names the service: {spans:#?}"
    );
}

/// Without an endpoint nothing is exported, not even to the SDK's default address
/// (localhost:4318, watched here when it is free), and requests carrying `traceparent` are
/// served as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported() {
    let receiver = Receiver::default();
    let watching_default = receiver.start_on("127.0.0.1:4318").await.is_some();
    let mut child = OnsaleProcess::start(
        &fresh_sqlite_database(),
        None,
        free_port(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("RATE_LIMIT_USER_PER_SEC", "0"),
        ],
    )
    .await;
    let caller = CallerTrace::new();
    hold_in_trace(&child, &caller).await;
    // A graceful stop would flush anything queued, so after it nothing more can come.
    let status = child.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exits cleanly: {status}");
    if watching_default {
        assert_eq!(receiver.posts(), 0, "nothing was sent to localhost:4318");
    }
}

/// An endpoint that is not a URL stops the process at start with one line naming the variable,
/// as other invalid settings do.
#[test]
fn an_invalid_endpoint_stops_the_process_with_one_line() {
    for var in onsale::telemetry::OTLP_ENDPOINT_VARS {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_onsale"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", "sqlite::memory:")
            .env("BIND_ADDR", "127.0.0.1:0")
            .env(var, "not a url")
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {var}: {stderr}");
        assert!(lines[0].contains(var), "names {var}: {stderr}");
    }
}
