//! The Stripe client against a real Stripe stand-in (localstripe, started by
//! `scripts/with-services.sh`), plus a one-shot fake server to see exactly what goes on the wire.
//!
//! The card step that a browser does with Stripe.js (attach a card, confirm) is done here with
//! plain HTTP, the way localstripe accepts it.

use onsale::config::StripeConfig;
use onsale::payment::{IntentStatus, PaymentError, StripeClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET_KEY: &str = "sk_test_onsale_integration";

fn api_base() -> String {
    std::env::var("TEST_STRIPE_API_BASE").expect(
        "TEST_STRIPE_API_BASE is not set: run the tests with ./scripts/test.sh (or scripts/with-services.sh), which starts localstripe",
    )
}

fn client_for(api_base: &str, secret_key: &str) -> StripeClient {
    StripeClient::new(&StripeConfig {
        secret_key: secret_key.to_owned(),
        api_base: api_base.to_owned(),
        webhook_secret: None,
        currency: "usd".to_owned(),
    })
    .expect("build the Stripe client")
}

fn client() -> StripeClient {
    client_for(&api_base(), SECRET_KEY)
}

/// A fresh key: the localstripe instance is shared by every test.
fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The browser's part: attach `payment_method`, then confirm. Returns the confirm answer.
async fn card_step(intent_id: &str, payment_method: &str) -> (u16, Vec<u8>) {
    let http = reqwest::Client::new();
    let base = api_base();
    let attach = http
        .post(format!("{base}/v1/payment_intents/{intent_id}"))
        .bearer_auth(SECRET_KEY)
        .form(&[("payment_method", payment_method)])
        .send()
        .await
        .expect("attach the payment method");
    assert_eq!(attach.status().as_u16(), 200, "attach {payment_method}");
    // localstripe answers 500 when `/confirm` itself carries a payment_method.
    let confirm = http
        .post(format!("{base}/v1/payment_intents/{intent_id}/confirm"))
        .bearer_auth(SECRET_KEY)
        .send()
        .await
        .expect("confirm");
    let status = confirm.status().as_u16();
    let body = confirm.bytes().await.expect("confirm body").to_vec();
    (status, body)
}

/// Creates a 15.00 USD intent and authorises it with a card that works.
async fn authorised_intent(stripe: &StripeClient) -> String {
    let intent = stripe
        .create_payment_intent(1500, "usd", &[("hold_id", &key())], &key())
        .await
        .expect("create");
    let (status, body) = card_step(&intent.id, "pm_card_visa").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    intent.id
}

#[tokio::test]
async fn authorise_then_capture() {
    let stripe = client();
    let hold_id = key();
    let intent = stripe
        .create_payment_intent(
            1500,
            "USD",
            &[("hold_id", &hold_id), ("user", "u-1")],
            &key(),
        )
        .await
        .expect("create");
    assert!(intent.id.starts_with("pi_"), "{}", intent.id);
    assert_eq!(intent.amount, 1500);
    assert_eq!(intent.currency, "usd");
    assert_eq!(intent.status, IntentStatus::RequiresPaymentMethod);
    let secret = intent.client_secret.as_deref().expect("client_secret");
    assert!(
        secret.starts_with(&format!("{}_secret_", intent.id)),
        "{secret}"
    );
    assert_eq!(intent.metadata.get("hold_id"), Some(&hold_id));
    assert_eq!(intent.metadata.get("user").map(String::as_str), Some("u-1"));
    assert_eq!(intent.latest_charge_id, None);

    let (status, body) = card_step(&intent.id, "pm_card_visa").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let authorised = stripe
        .retrieve_payment_intent(&intent.id)
        .await
        .expect("retrieve");
    assert_eq!(authorised.status, IntentStatus::RequiresCapture);
    assert_eq!(authorised.metadata.get("hold_id"), Some(&hold_id));
    assert!(authorised.latest_charge_id.is_some());

    let captured = stripe
        .capture_payment_intent(&intent.id, &key())
        .await
        .expect("capture");
    assert_eq!(captured.id, intent.id);
    assert_eq!(captured.status, IntentStatus::Succeeded);
    assert_eq!(captured.amount, 1500);
}

#[tokio::test]
async fn authorise_then_cancel() {
    let stripe = client();
    let id = authorised_intent(&stripe).await;

    let canceled = stripe
        .cancel_payment_intent(&id, &key())
        .await
        .expect("cancel");
    assert_eq!(canceled.status, IntentStatus::Canceled);
    let again = stripe.retrieve_payment_intent(&id).await.expect("retrieve");
    assert_eq!(again.status, IntentStatus::Canceled);

    // Cancelling twice is refused for good, not "try again later". (Capturing a cancelled
    // intent would be too on Stripe, but localstripe allows it.)
    let err = stripe
        .cancel_payment_intent(&id, &key())
        .await
        .expect_err("second cancel");
    assert!(
        matches!(err, PaymentError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn captured_intent_can_be_refunded() {
    let stripe = client();
    let id = authorised_intent(&stripe).await;
    stripe
        .capture_payment_intent(&id, &key())
        .await
        .expect("capture");

    let refund = stripe.create_refund(&id, &key()).await.expect("refund");
    assert!(refund.id.starts_with("re_"), "{}", refund.id);
    assert_eq!(refund.payment_intent_id.as_deref(), Some(id.as_str()));
    assert_eq!(refund.amount, 1500);
    assert_eq!(refund.currency, "usd");
    assert_eq!(refund.status, "succeeded");
}

#[tokio::test]
async fn declined_card_is_declined_and_intent_can_be_retried() {
    let stripe = client();
    let intent = stripe
        .create_payment_intent(2000, "usd", &[("hold_id", &key())], &key())
        .await
        .expect("create");

    let (status, body) = card_step(&intent.id, "pm_card_chargeCustomerFail").await;
    assert_eq!(status, 402, "{}", String::from_utf8_lossy(&body));
    let err = PaymentError::from_response(status, None, &body);
    assert_eq!(
        err,
        PaymentError::Declined {
            code: Some("card_declined".into()),
            message: "Your card was declined.".into(),
        }
    );
    assert!(!err.is_transient());

    let after = stripe
        .retrieve_payment_intent(&intent.id)
        .await
        .expect("retrieve");
    assert_eq!(after.status, IntentStatus::RequiresPaymentMethod);
    assert_eq!(
        after.last_payment_error_code.as_deref(),
        Some("card_declined")
    );
}

#[tokio::test]
async fn unknown_intent_is_rejected_not_transient() {
    let err = client()
        .retrieve_payment_intent("pi_does_not_exist")
        .await
        .expect_err("unknown intent");
    assert!(
        matches!(err, PaymentError::Rejected { status: 404, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn bad_key_is_rejected_and_never_echoed() {
    // localstripe accepts `sk_` keys longer than five characters only.
    let err = client_for(&api_base(), "sk_x")
        .retrieve_payment_intent("pi_whatever")
        .await
        .expect_err("bad key");
    assert!(
        matches!(err, PaymentError::Rejected { status: 401, .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("sk_x"), "{err:?}");
}

#[tokio::test]
async fn unreachable_stripe_is_transient() {
    let stripe = client_for("http://127.0.0.1:1", SECRET_KEY);
    let err = stripe
        .retrieve_payment_intent("pi_1")
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        matches!(err, PaymentError::Transient { status: None, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    let err = stripe
        .create_payment_intent(100, "usd", &[], &key())
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_transient(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(SECRET_KEY));
}

/// Serves one request with `status` and `body`; returns the base URL and the raw request.
async fn one_shot_server(
    status: &'static str,
    body: &'static str,
) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.expect("read");
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(answer.as_bytes()).await.expect("write");
        let _ = socket.shutdown().await;
        String::from_utf8_lossy(&request).to_string()
    });
    (base, task)
}

#[tokio::test]
async fn create_sends_form_auth_and_idempotency_key() {
    let (base, request) = one_shot_server(
        "200 OK",
        r#"{"id":"pi_x","status":"requires_payment_method","amount":1500,"currency":"usd",
            "client_secret":"pi_x_secret_y","metadata":{"hold_id":"h 1&2"},"latest_charge":null}"#,
    )
    .await;
    let intent = client_for(&base, SECRET_KEY)
        .create_payment_intent(1500, "usd", &[("hold_id", "h 1&2")], "idem-123")
        .await
        .expect("create");
    assert_eq!(intent.metadata["hold_id"], "h 1&2");

    let request = request.await.expect("server task");
    let (head, body) = request.split_once("\r\n\r\n").expect("request head");
    let head = head.to_ascii_lowercase();
    assert!(
        head.starts_with("post /v1/payment_intents http/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("authorization: bearer {SECRET_KEY}")),
        "{head}"
    );
    assert!(head.contains("idempotency-key: idem-123"), "{head}");
    assert!(
        head.contains("content-type: application/x-www-form-urlencoded"),
        "{head}"
    );
    let mut fields: Vec<&str> = body.split('&').collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "amount=1500",
            "capture_method=manual",
            "currency=usd",
            "metadata%5Bhold_id%5D=h+1%262",
        ]
    );
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_transient() {
    for status in [
        "500 Internal Server Error",
        "503 Service Unavailable",
        "429 Too Many Requests",
    ] {
        let (base, request) = one_shot_server(
            status,
            r#"{"error":{"type":"api_error","message":"try again"}}"#,
        )
        .await;
        let err = client_for(&base, SECRET_KEY)
            .capture_payment_intent("pi_1", "idem-1")
            .await
            .expect_err(status);
        assert!(err.is_transient(), "{status}: {err:?}");
        let request = request.await.expect("server task");
        assert!(
            request.starts_with("POST /v1/payment_intents/pi_1/capture "),
            "{request}"
        );
    }
}

#[tokio::test]
async fn odd_ids_never_reach_the_network() {
    // Nothing listens there: a request that went out would be Transient.
    let stripe = client_for("http://127.0.0.1:1", SECRET_KEY);
    for id in [
        "",
        "..",
        "../customers/cus_1",
        "pi_1/capture",
        "pi_1?expand=x",
    ] {
        let err = stripe
            .retrieve_payment_intent(id)
            .await
            .expect_err("odd id");
        assert!(
            matches!(err, PaymentError::Rejected { status: 404, .. }),
            "{id:?}: {err:?}"
        );
        let err = stripe.create_refund(id, &key()).await.expect_err("odd id");
        assert!(
            matches!(err, PaymentError::Rejected { status: 404, .. }),
            "{id:?}: {err:?}"
        );
    }
}
