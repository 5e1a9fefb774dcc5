//! Payments with Stripe: the API client ([`StripeClient`]) and webhook verification
//! ([`verify_signature`], [`parse_event`]). The booking rules that use them live elsewhere.

pub mod stripe;
pub mod webhook;

pub use stripe::{IntentStatus, PaymentError, PaymentIntent, Refund, StripeClient};
pub use webhook::{
    DEFAULT_TOLERANCE_SECS, EventError, SignatureError, WebhookEvent, parse_event, verify_signature,
};

/// Installs rustls's ring crypto provider as the process default, which reqwest's TLS needs.
/// Safe to call any number of times: later calls (or a provider installed elsewhere) win nothing
/// and change nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
