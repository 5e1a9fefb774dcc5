//! Stripe webhook events: checking the `Stripe-Signature` header and reading the event.
//!
//! Stripe signs `"{t}.{raw body}"` with HMAC-SHA256 under the endpoint's `whsec_…` secret and
//! sends `Stripe-Signature: t=<unix time>,v1=<hex>[,v1=<hex>…][,v0=…]`. Several `v1` entries
//! appear while a secret is being rolled; any one of them matching is enough.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::stripe::PaymentIntent;

/// How far the signed timestamp may be from our clock, as Stripe's libraries default to.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a webhook's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    MissingHeader,
    #[error("the Stripe-Signature header is malformed")]
    MalformedHeader,
    #[error("the Stripe-Signature header has no v1 signature")]
    NoV1Signature,
    #[error("no signature matches the payload")]
    Mismatch,
    #[error("the signature's timestamp is outside the tolerance")]
    TimestampOutOfTolerance,
}

/// Checks a webhook's `Stripe-Signature` header against the raw request body.
///
/// `now_unix` is the current time and `tolerance_secs` how far the signed timestamp may be
/// from it, either way (use [`DEFAULT_TOLERANCE_SECS`]). The timestamp is checked only once a
/// signature matches, so a forged request learns nothing about the clock.
pub fn verify_signature(
    payload: &[u8],
    header: Option<&str>,
    secret: &str,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::MissingHeader)?;
    let (timestamp, signatures) = parse_header(header)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoV1Signature);
    }

    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| SignatureError::Mismatch)?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(payload);
    // `verify_slice` compares in constant time; an entry that is not hex cannot match.
    let matched = signatures.iter().any(|sig| {
        hex::decode(sig)
            .map(|bytes| mac.clone().verify_slice(&bytes).is_ok())
            .unwrap_or(false)
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }

    let signed_at: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::MalformedHeader)?;
    if now_unix.abs_diff(signed_at) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::TimestampOutOfTolerance);
    }
    Ok(())
}

/// Splits `t=…,v1=…,…` into the timestamp (as sent, since that is what was signed) and the
/// `v1` signatures. Other schemes (`v0`) and unknown keys are ignored.
fn parse_header(header: &str) -> Result<(&str, Vec<&str>), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or(SignatureError::MalformedHeader)?;
        match key {
            "t" => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::MalformedHeader);
                }
                timestamp = Some(value);
            }
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::MalformedHeader)?;
    // Only to reject absurd values early; the string itself is what was signed.
    timestamp
        .parse::<i64>()
        .map_err(|_| SignatureError::MalformedHeader)?;
    Ok((timestamp, signatures))
}

/// Why a webhook body could not be read as an event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the webhook body is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the webhook event has no {0}")]
    MissingField(&'static str),
}

/// A Stripe event, read leniently: only what onsale needs.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// `evt_…`, unique per event (redeliveries repeat it).
    pub id: String,
    /// Such as `payment_intent.succeeded`.
    pub event_type: String,
    /// Unix time the event was created.
    pub created: i64,
    /// `data.object`: the resource the event is about, as it was then.
    pub object: Value,
}

impl WebhookEvent {
    /// The PaymentIntent the event carries, for `payment_intent.*` events.
    pub fn payment_intent(&self) -> Option<PaymentIntent> {
        if !self.event_type.starts_with("payment_intent.") {
            return None;
        }
        match self.object.get("object").and_then(Value::as_str) {
            Some("payment_intent") | None => PaymentIntent::from_json(&self.object),
            Some(_) => None,
        }
    }
}

/// Reads an event from a webhook body. Verify the signature first.
pub fn parse_event(payload: &[u8]) -> Result<WebhookEvent, EventError> {
    let value: Value = serde_json::from_slice(payload)?;
    let str_field = |name: &'static str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(EventError::MissingField(name))
    };
    Ok(WebhookEvent {
        id: str_field("id")?,
        event_type: str_field("type")?,
        created: value.get("created").and_then(Value::as_i64).unwrap_or(0),
        object: value
            .pointer("/data/object")
            .cloned()
            .ok_or(EventError::MissingField("data.object"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::IntentStatus;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    const NOW: i64 = 1_700_000_000;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn check(header: &str) -> Result<(), SignatureError> {
        verify_signature(BODY, Some(header), SECRET, NOW, DEFAULT_TOLERANCE_SECS)
    }

    #[test]
    fn valid_signature_is_accepted() {
        let header = format!("t={NOW},v1={}", sign(SECRET, NOW, BODY));
        assert_eq!(check(&header), Ok(()));
    }

    #[test]
    fn independently_computed_signature_is_accepted() {
        // From `printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac whsec_test_secret`.
        let header =
            "t=1700000000,v1=22d8dc182f5c588077683bd378368e29765bfe5df2560112b4f28fef120f0e31";
        assert_eq!(check(header), Ok(()));
    }

    #[test]
    fn any_matching_v1_among_several_is_accepted() {
        let header = format!(
            "t={NOW},v1={},v1={},v0={}",
            sign("whsec_old", NOW, BODY),
            sign(SECRET, NOW, BODY),
            sign("whsec_v0", NOW, BODY)
        );
        assert_eq!(check(&header), Ok(()));
    }

    #[test]
    fn wrong_secret_is_rejected() {
        let header = format!("t={NOW},v1={}", sign("whsec_other", NOW, BODY));
        assert_eq!(check(&header), Err(SignatureError::Mismatch));
    }

    #[test]
    fn tampered_body_is_rejected() {
        let header = format!("t={NOW},v1={}", sign(SECRET, NOW, BODY));
        let tampered = br#"{"id":"evt_1","type":"payment_intent.canceled"}"#;
        assert_eq!(
            verify_signature(tampered, Some(&header), SECRET, NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tampered_timestamp_is_rejected() {
        let header = format!("t={},v1={}", NOW + 1, sign(SECRET, NOW, BODY));
        assert_eq!(check(&header), Err(SignatureError::Mismatch));
    }

    #[test]
    fn stale_and_future_timestamps_are_rejected() {
        for t in [NOW - 301, NOW + 301] {
            let header = format!("t={t},v1={}", sign(SECRET, t, BODY));
            assert_eq!(check(&header), Err(SignatureError::TimestampOutOfTolerance));
        }
        for t in [NOW - 300, NOW + 300] {
            let header = format!("t={t},v1={}", sign(SECRET, t, BODY));
            assert_eq!(check(&header), Ok(()), "t = {t}");
        }
    }

    #[test]
    fn missing_header_is_rejected() {
        assert_eq!(
            verify_signature(BODY, None, SECRET, NOW, 300),
            Err(SignatureError::MissingHeader)
        );
    }

    #[test]
    fn malformed_headers_are_rejected() {
        let sig = sign(SECRET, NOW, BODY);
        for header in [
            String::new(),
            "garbage".to_owned(),
            format!("v1={sig}"),
            format!("t=abc,v1={sig}"),
            format!("t=,v1={sig}"),
            format!("t=-5,v1={sig}"),
            format!("t={NOW};v1={sig}"),
            format!("t=99999999999999999999999,v1={sig}"),
        ] {
            assert_eq!(
                check(&header),
                Err(SignatureError::MalformedHeader),
                "{header:?}"
            );
        }
    }

    #[test]
    fn header_without_v1_is_rejected() {
        let header = format!("t={NOW},v0={}", sign(SECRET, NOW, BODY));
        assert_eq!(check(&header), Err(SignatureError::NoV1Signature));
    }

    #[test]
    fn non_hex_signature_does_not_match() {
        assert_eq!(
            check(&format!("t={NOW},v1=zz-not-hex")),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn payment_intent_event_is_parsed() {
        let body = br#"{
          "id": "evt_9", "type": "payment_intent.succeeded", "created": 1700000000,
          "api_version": "2017-08-15",
          "data": {"object": {"id": "pi_9", "object": "payment_intent", "status": "succeeded",
                   "amount": 2500, "currency": "usd", "metadata": {"hold_id": "7"},
                   "latest_charge": {"id": "ch_9", "object": "charge"}}}
        }"#;
        let event = parse_event(body).expect("an event");
        assert_eq!(event.id, "evt_9");
        assert_eq!(event.event_type, "payment_intent.succeeded");
        assert_eq!(event.created, 1_700_000_000);
        let pi = event.payment_intent().expect("an intent");
        assert_eq!(pi.id, "pi_9");
        assert_eq!(pi.status, IntentStatus::Succeeded);
        assert_eq!(pi.metadata["hold_id"], "7");
        assert_eq!(pi.latest_charge_id.as_deref(), Some("ch_9"));
    }

    #[test]
    fn other_events_carry_no_intent() {
        let body = br#"{"id":"evt_2","type":"charge.refunded","created":1,
                        "data":{"object":{"id":"ch_1","object":"charge"}}}"#;
        assert_eq!(parse_event(body).expect("an event").payment_intent(), None);
        assert!(matches!(
            parse_event(br#"{"id":"evt_3","type":"x"}"#),
            Err(EventError::MissingField("data.object"))
        ));
        assert!(matches!(parse_event(b"nope"), Err(EventError::Json(_))));
    }
}
