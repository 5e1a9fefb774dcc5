//! Payments with Stripe.
