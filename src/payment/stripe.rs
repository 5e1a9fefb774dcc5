//! A small client for the part of Stripe's REST API that checkout needs: payment intents with
//! manual capture, and refunds.
//!
//! Requests are form-encoded with the secret key as a bearer token, as Stripe's API expects.
//! Responses are read leniently from JSON (optional fields, either shape of `latest_charge`),
//! so Stripe-compatible test servers with slightly different shapes work too.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::Value;

use crate::config::StripeConfig;

/// Longest a whole request to Stripe may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to Stripe failed, sorted by what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The outcome is unknown or temporary (network error, timeout, HTTP 5xx, 429, 409):
    /// retrying with the same idempotency key is safe.
    #[error("payment provider temporarily unavailable: {message}")]
    Transient {
        /// The HTTP status, when Stripe answered at all.
        status: Option<u16>,
        message: String,
    },
    /// The card was declined (HTTP 402 or a `card_error`); the payer must try another card.
    #[error("card declined: {message}")]
    Declined {
        /// Stripe's error code, such as `card_declined`.
        code: Option<String>,
        /// A message Stripe meant for the payer.
        message: String,
    },
    /// Stripe refused the request (any other 4xx, such as 404 for an unknown intent or 400
    /// for an intent in the wrong state); repeating it will not help.
    #[error("payment request rejected (HTTP {status}): {message}")]
    Rejected {
        status: u16,
        /// Stripe's error code, such as `resource_missing` or `payment_intent_unexpected_state`.
        code: Option<String>,
        message: String,
    },
    /// Stripe answered success with a body this client cannot read.
    #[error("unexpected response from the payment provider: {0}")]
    InvalidResponse(String),
    /// The client could not be built (bad `STRIPE_API_BASE`, TLS setup).
    #[error("payment client setup failed: {0}")]
    Setup(String),
}

impl PaymentError {
    /// True when the same request, with the same idempotency key, may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Classifies a non-success HTTP answer from Stripe: `status`, the `Stripe-Should-Retry`
    /// header if present, and the body (`{"error": {"type", "code", "message"}}`).
    pub fn from_response(status: u16, should_retry: Option<bool>, body: &[u8]) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let field = |name: &str| {
            error
                .and_then(|e| e.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let message = field("message").unwrap_or_else(|| format!("HTTP {status}"));
        let code = field("code");
        let is_card_error = field("type").as_deref() == Some("card_error");

        if should_retry == Some(true) || status == 409 || status == 429 || status >= 500 {
            Self::Transient {
                status: Some(status),
                message,
            }
        } else if status == 402 || is_card_error {
            Self::Declined { code, message }
        } else {
            Self::Rejected {
                status,
                code,
                message,
            }
        }
    }

    /// Replaces any occurrence of `secret` in the messages, so that an echoed key never
    /// reaches a log line or a client.
    fn redact(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let scrub = |s: String| s.replace(secret, "sk_[redacted]");
        match self {
            Self::Transient { status, message } => Self::Transient {
                status,
                message: scrub(message),
            },
            Self::Declined { code, message } => Self::Declined {
                code,
                message: scrub(message),
            },
            Self::Rejected {
                status,
                code,
                message,
            } => Self::Rejected {
                status,
                code,
                message: scrub(message),
            },
            Self::InvalidResponse(m) => Self::InvalidResponse(scrub(m)),
            Self::Setup(m) => Self::Setup(scrub(m)),
        }
    }

    fn network(err: &reqwest::Error) -> Self {
        let what = if err.is_timeout() {
            "request timed out"
        } else if err.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        // reqwest's own message is terse ("error sending request"); the causes say why.
        let mut message = format!("{what}: {err}");
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Transient {
            status: None,
            message,
        }
    }
}

/// Where a payment intent is in its life. With manual capture the happy path is
/// `RequiresPaymentMethod` → (card step) → `RequiresCapture` → `Succeeded`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    /// Authorised: the money is reserved until captured or cancelled.
    RequiresCapture,
    Canceled,
    Succeeded,
    /// A status this client does not know (kept verbatim).
    Other(String),
}

impl IntentStatus {
    /// Reads Stripe's status string.
    pub fn parse(s: &str) -> Self {
        match s {
            "requires_payment_method" => Self::RequiresPaymentMethod,
            "requires_confirmation" => Self::RequiresConfirmation,
            "requires_action" => Self::RequiresAction,
            "processing" => Self::Processing,
            "requires_capture" => Self::RequiresCapture,
            "canceled" => Self::Canceled,
            "succeeded" => Self::Succeeded,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Stripe's status string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::RequiresConfirmation => "requires_confirmation",
            Self::RequiresAction => "requires_action",
            Self::Processing => "processing",
            Self::RequiresCapture => "requires_capture",
            Self::Canceled => "canceled",
            Self::Succeeded => "succeeded",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for IntentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields of a Stripe PaymentIntent that onsale uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    pub id: String,
    pub status: IntentStatus,
    /// In the currency's smallest unit (cents).
    pub amount: i64,
    /// Lower-case ISO code, such as `usd`.
    pub currency: String,
    /// What the browser needs for the card step; absent in some webhook payloads.
    pub client_secret: Option<String>,
    pub metadata: HashMap<String, String>,
    /// The id of the newest charge (Stripe sends an id, some stand-ins an embedded object).
    pub latest_charge_id: Option<String>,
    /// The code of the last failed payment attempt (such as `card_declined`), if any.
    pub last_payment_error_code: Option<String>,
}

impl PaymentIntent {
    /// Reads a PaymentIntent from Stripe's JSON. Only `id` is required; missing or odd
    /// fields get empty values. `None` when `value` has no string `id`.
    pub fn from_json(value: &Value) -> Option<Self> {
        let id = value.get("id")?.as_str()?.to_owned();
        let str_field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        let latest_charge_id = match value.get("latest_charge") {
            Some(Value::String(id)) => Some(id.clone()),
            Some(Value::Object(charge)) => charge.get("id").and_then(Value::as_str).map(Into::into),
            // Older API versions list charges instead.
            _ => value
                .pointer("/charges/data")
                .and_then(Value::as_array)
                .and_then(|charges| charges.last())
                .and_then(|c| c.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        Some(Self {
            id,
            status: IntentStatus::parse(str_field("status").as_deref().unwrap_or_default()),
            amount: value.get("amount").and_then(Value::as_i64).unwrap_or(0),
            currency: str_field("currency").unwrap_or_default(),
            client_secret: str_field("client_secret"),
            metadata: string_map(value.get("metadata")),
            latest_charge_id,
            last_payment_error_code: value
                .pointer("/last_payment_error/code")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// The fields of a Stripe Refund that onsale uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: String,
    /// `pending`, `succeeded`, `failed`, `canceled`, …, kept verbatim.
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub payment_intent_id: Option<String>,
}

impl Refund {
    /// Reads a Refund from Stripe's JSON; `None` when `value` has no string `id`.
    pub fn from_json(value: &Value) -> Option<Self> {
        let str_field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            id: str_field("id")?,
            status: str_field("status").unwrap_or_default(),
            amount: value.get("amount").and_then(Value::as_i64).unwrap_or(0),
            currency: str_field("currency").unwrap_or_default(),
            payment_intent_id: str_field("payment_intent"),
        })
    }
}

/// Metadata values are strings in Stripe; anything else is kept as its JSON text.
fn string_map(value: Option<&Value>) -> HashMap<String, String> {
    let Some(Value::Object(map)) = value else {
        return HashMap::new();
    };
    map.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// A Stripe API client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base: Url,
    secret_key: String,
    currency: String,
}

impl fmt::Debug for StripeClient {
    // Hand-written so that the secret key never shows up in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeClient")
            .field("base", &self.base.as_str())
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

impl StripeClient {
    /// Builds a client for `config.api_base` (Stripe itself or a stand-in).
    pub fn new(config: &StripeConfig) -> Result<Self, PaymentError> {
        super::install_crypto_provider();
        let base = Url::parse(&config.api_base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| {
                PaymentError::Setup(format!("invalid API base URL {:?}", config.api_base))
            })?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("onsale/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PaymentError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            base,
            secret_key: config.secret_key.clone(),
            currency: config.currency.to_ascii_lowercase(),
        })
    }

    /// The configured default currency (lower case, such as `usd`).
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// Creates a PaymentIntent with manual capture: the card is only authorised when the
    /// payer confirms, and charged when we capture.
    #[tracing::instrument(
        name = "stripe.create_payment_intent",
        skip_all,
        fields(amount_cents = amount_cents, currency = %currency),
        err(Display, level = "warn")
    )]
    pub async fn create_payment_intent(
        &self,
        amount_cents: i64,
        currency: &str,
        metadata: &[(&str, &str)],
        idempotency_key: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        let mut form = vec![
            ("amount".to_owned(), amount_cents.to_string()),
            ("currency".to_owned(), currency.to_ascii_lowercase()),
            ("capture_method".to_owned(), "manual".to_owned()),
        ];
        form.extend(
            metadata
                .iter()
                .map(|(k, v)| (format!("metadata[{k}]"), (*v).to_owned())),
        );
        let body = self
            .send(
                Method::POST,
                &["v1", "payment_intents"],
                Some(&form),
                Some(idempotency_key),
            )
            .await?;
        intent_from(&body)
    }

    /// Fetches a PaymentIntent's current state.
    #[tracing::instrument(
        name = "stripe.retrieve_payment_intent",
        skip(self),
        err(Display, level = "warn")
    )]
    pub async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, PaymentError> {
        check_id(id, "payment_intent")?;
        let body = self
            .send(Method::GET, &["v1", "payment_intents", id], None, None)
            .await?;
        intent_from(&body)
    }

    /// Captures an authorised (`requires_capture`) PaymentIntent for its full amount.
    #[tracing::instrument(
        name = "stripe.capture_payment_intent",
        skip(self, idempotency_key),
        err(Display, level = "warn")
    )]
    pub async fn capture_payment_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        self.intent_action(id, "capture", idempotency_key).await
    }

    /// Cancels a PaymentIntent that is not yet captured, releasing any authorisation.
    #[tracing::instrument(
        name = "stripe.cancel_payment_intent",
        skip(self, idempotency_key),
        err(Display, level = "warn")
    )]
    pub async fn cancel_payment_intent(
        &self,
        id: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        self.intent_action(id, "cancel", idempotency_key).await
    }

    /// `POST /v1/payment_intents/{id}/{action}` with no parameters.
    async fn intent_action(
        &self,
        id: &str,
        action: &str,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        check_id(id, "payment_intent")?;
        let body = self
            .send(
                Method::POST,
                &["v1", "payment_intents", id, action],
                None,
                Some(idempotency_key),
            )
            .await?;
        intent_from(&body)
    }

    /// Refunds a captured PaymentIntent in full.
    #[tracing::instrument(
        name = "stripe.create_refund",
        skip(self, idempotency_key),
        err(Display, level = "warn")
    )]
    pub async fn create_refund(
        &self,
        payment_intent_id: &str,
        idempotency_key: &str,
    ) -> Result<Refund, PaymentError> {
        check_id(payment_intent_id, "payment_intent")?;
        let form = [("payment_intent".to_owned(), payment_intent_id.to_owned())];
        let body = self
            .send(
                Method::POST,
                &["v1", "refunds"],
                Some(&form),
                Some(idempotency_key),
            )
            .await?;
        Refund::from_json(&body)
            .ok_or_else(|| PaymentError::InvalidResponse("refund without an id".into()))
    }

    /// Sends one request and returns the JSON body of a 2xx answer.
    async fn send(
        &self,
        method: Method,
        path: &[&str],
        form: Option<&[(String, String)]>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, PaymentError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| PaymentError::Setup("API base URL cannot have a path".into()))?
            .pop_if_empty()
            // Percent-encodes each segment; `check_id` already keeps ids plain.
            .extend(path);

        let mut request = crate::telemetry::with_trace_context(self.http.request(method, url))
            .bearer_auth(&self.secret_key);
        if let Some(key) = idempotency_key.filter(|k| !k.is_empty()) {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(form) = form {
            request = request.form(form);
        }

        let result = async {
            let response = request
                .send()
                .await
                .map_err(|e| PaymentError::network(&e))?;
            let status = response.status();
            let should_retry = response
                .headers()
                .get("stripe-should-retry")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.eq_ignore_ascii_case("true"));
            let bytes = response
                .bytes()
                .await
                .map_err(|e| PaymentError::network(&e))?;
            if !status.is_success() {
                return Err(PaymentError::from_response(
                    status.as_u16(),
                    should_retry,
                    &bytes,
                ));
            }
            serde_json::from_slice::<Value>(&bytes).map_err(|e| {
                PaymentError::InvalidResponse(format!(
                    "HTTP {} with a body that is not JSON: {e}",
                    status.as_u16()
                ))
            })
        }
        .await;
        result.map_err(|e| e.redact(&self.secret_key))
    }
}

/// Stripe ids are letters, digits and underscores. Anything else cannot name an object, and
/// must not reach a URL path, so it is answered here as Stripe answers an unknown id.
fn check_id(id: &str, kind: &str) -> Result<(), PaymentError> {
    let plausible = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plausible {
        Ok(())
    } else {
        Err(PaymentError::Rejected {
            status: 404,
            code: Some("resource_missing".into()),
            message: format!("No such {kind}: {id:?}"),
        })
    }
}

fn intent_from(body: &Value) -> Result<PaymentIntent, PaymentError> {
    PaymentIntent::from_json(body)
        .ok_or_else(|| PaymentError::InvalidResponse("payment intent without an id".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intent_reads_stripe_shape_with_charge_id() {
        let v = json!({
            "id": "pi_1", "status": "requires_capture", "amount": 1500, "currency": "usd",
            "client_secret": "pi_1_secret_x", "metadata": {"hold_id": "42", "n": 3},
            "latest_charge": "ch_1"
        });
        let pi = PaymentIntent::from_json(&v).expect("an intent");
        assert_eq!(pi.status, IntentStatus::RequiresCapture);
        assert_eq!(pi.amount, 1500);
        assert_eq!(pi.latest_charge_id.as_deref(), Some("ch_1"));
        assert_eq!(pi.metadata["hold_id"], "42");
        assert_eq!(pi.metadata["n"], "3");
    }

    #[test]
    fn intent_reads_embedded_charge_and_unknown_status() {
        let v = json!({"id": "pi_2", "status": "brand_new", "latest_charge": {"id": "ch_2"}});
        let pi = PaymentIntent::from_json(&v).expect("an intent");
        assert_eq!(pi.status, IntentStatus::Other("brand_new".into()));
        assert_eq!(pi.latest_charge_id.as_deref(), Some("ch_2"));
        assert_eq!(pi.client_secret, None);
        assert!(PaymentIntent::from_json(&json!({"status": "succeeded"})).is_none());
    }

    #[test]
    fn errors_are_classified_by_status() {
        let declined = br#"{"error":{"code":"card_declined","message":"Your card was declined.","type":"invalid_request_error"}}"#;
        assert_eq!(
            PaymentError::from_response(402, None, declined),
            PaymentError::Declined {
                code: Some("card_declined".into()),
                message: "Your card was declined.".into()
            }
        );
        let missing = br#"{"error":{"message":"Not Found","type":"invalid_request_error"}}"#;
        assert_eq!(
            PaymentError::from_response(404, None, missing),
            PaymentError::Rejected {
                status: 404,
                code: None,
                message: "Not Found".into()
            }
        );
        assert!(PaymentError::from_response(503, None, b"<html>").is_transient());
        assert!(PaymentError::from_response(429, None, b"").is_transient());
        assert!(PaymentError::from_response(400, Some(true), b"").is_transient());
        let card_error = br#"{"error":{"type":"card_error","message":"no"}}"#;
        assert!(matches!(
            PaymentError::from_response(400, None, card_error),
            PaymentError::Declined { .. }
        ));
    }

    #[test]
    fn secret_is_scrubbed_from_messages() {
        let e = PaymentError::Rejected {
            status: 401,
            code: None,
            message: "Invalid API Key provided: sk_test_abc".into(),
        }
        .redact("sk_test_abc");
        assert!(!e.to_string().contains("sk_test_abc"));
    }

    #[test]
    fn debug_hides_the_key() {
        let client = StripeClient::new(&StripeConfig {
            secret_key: "sk_test_secret".into(),
            api_base: "http://127.0.0.1:1".into(),
            webhook_secret: None,
            currency: "USD".into(),
        })
        .expect("client");
        assert!(!format!("{client:?}").contains("sk_test_secret"));
        assert_eq!(client.currency(), "usd");
    }
}
