//! The checkout's state machine as pure code: every decision of the payment saga about where
//! a checkout goes next, apart from the database and Stripe calls that carry it out.
//!
//! ```text
//! PENDING ──paid, hold honoured──▶ BOOKED ──capture──▶ CAPTURED
//!    │   └─paid, not honoured──▶ CANCELLING ──cancel──▶ CANCELLED   (captured: REFUNDING ──refund──▶ REFUNDED)
//!    └──payment failed/cancelled──▶ FAILED / CANCELLED (hold released)
//! BOOKED/CAPTURED ──booking cancelled──▶ CANCELLING / REFUNDING
//! ```

use crate::payment::IntentStatus;
pub use entity::status::CheckoutState;

/// States with a Stripe call still to make: the outbox.
pub const OUTBOX: [CheckoutState; 3] = [
    CheckoutState::Booked,
    CheckoutState::Cancelling,
    CheckoutState::Refunding,
];

/// A Stripe call the outbox makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StripeCall {
    Capture,
    CancelAuthorisation,
    Refund,
}

impl StripeCall {
    /// The call a checkout in `state` waits for, if any.
    pub fn due(state: CheckoutState) -> Option<Self> {
        match state {
            CheckoutState::Booked => Some(Self::Capture),
            CheckoutState::Cancelling => Some(Self::CancelAuthorisation),
            CheckoutState::Refunding => Some(Self::Refund),
            _ => None,
        }
    }

    /// Where the checkout is once the call succeeded.
    pub fn done(self) -> CheckoutState {
        match self {
            Self::Capture => CheckoutState::Captured,
            Self::CancelAuthorisation => CheckoutState::Cancelled,
            Self::Refund => CheckoutState::Refunded,
        }
    }

    /// The word used in the call's idempotency key.
    pub fn key_word(self) -> &'static str {
        match self {
            Self::Capture => "capture",
            Self::CancelAuthorisation => "cancel",
            Self::Refund => "refund",
        }
    }
}

/// What the intent's current status means for a pending checkout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntentOutcome {
    /// The money is authorised (`captured: false`) or already taken.
    Paid { captured: bool },
    /// The payment is over without money: the hold is released and the checkout ends here.
    Failed(CheckoutState),
    /// Nothing decided yet.
    Pending(IntentStatus),
}

/// Reads the intent's status; `final_failure` says a webhook reported the payment failed
/// for good (a declined card leaves the intent `requires_payment_method`, retryable).
pub fn on_intent(status: &IntentStatus, final_failure: bool) -> IntentOutcome {
    match status {
        IntentStatus::RequiresCapture => IntentOutcome::Paid { captured: false },
        IntentStatus::Succeeded => IntentOutcome::Paid { captured: true },
        IntentStatus::Canceled => IntentOutcome::Failed(CheckoutState::Cancelled),
        IntentStatus::RequiresPaymentMethod if final_failure => {
            IntentOutcome::Failed(CheckoutState::Failed)
        }
        other => IntentOutcome::Pending(other.clone()),
    }
}

/// Where a paid checkout goes: booked if the hold could be honoured, else the money goes back.
pub fn after_payment(captured: bool, honoured: bool) -> CheckoutState {
    match (honoured, captured) {
        (true, false) => CheckoutState::Booked,
        (true, true) => CheckoutState::Captured,
        (false, false) => CheckoutState::Cancelling,
        (false, true) => CheckoutState::Refunding,
    }
}

/// Where a checkout goes when its booking is cancelled: the money goes back.
pub fn on_booking_cancelled(state: CheckoutState) -> CheckoutState {
    match state {
        CheckoutState::Booked => CheckoutState::Cancelling,
        CheckoutState::Captured => CheckoutState::Refunding,
        other => other,
    }
}

/// Stripe refused a call for good; what the intent's real status says to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterRefusal {
    /// The call's effect is there after all: end in this state.
    Done(CheckoutState),
    /// Another call is needed first (the state to move to).
    Move(CheckoutState),
    /// The authorisation is gone before capture: no booking may stay without payment, so the
    /// booking is cancelled and the checkout ends `FAILED`.
    CancelBooking,
    /// Nothing to do but retry later and log it.
    Retry,
}

pub fn after_refusal(state: CheckoutState, intent: &IntentStatus) -> AfterRefusal {
    match (state, intent) {
        (CheckoutState::Booked, IntentStatus::Succeeded) => {
            AfterRefusal::Done(CheckoutState::Captured)
        }
        (CheckoutState::Cancelling, IntentStatus::Canceled) => {
            AfterRefusal::Done(CheckoutState::Cancelled)
        }
        (CheckoutState::Cancelling, IntentStatus::Succeeded) => {
            AfterRefusal::Move(CheckoutState::Refunding)
        }
        (CheckoutState::Booked, IntentStatus::Canceled | IntentStatus::RequiresPaymentMethod) => {
            AfterRefusal::CancelBooking
        }
        _ => AfterRefusal::Retry,
    }
}

/// How settling a payment ended, as the caller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Booked(String),
    /// The hold could not be honoured; the money goes back (cancel or refund).
    NotHonoured,
    /// The payment failed or was cancelled; the hold was released.
    Failed,
    /// Nothing decided yet (the buyer has not paid).
    Pending(IntentStatus),
}

/// What a checkout already decided says, read back.
pub fn settled_of(state: CheckoutState, booking_id: Option<&str>) -> Settled {
    match state {
        CheckoutState::Booked | CheckoutState::Captured => match booking_id {
            Some(id) => Settled::Booked(id.to_owned()),
            None => Settled::NotHonoured,
        },
        CheckoutState::Failed | CheckoutState::Cancelled if booking_id.is_none() => Settled::Failed,
        CheckoutState::Pending => Settled::Pending(IntentStatus::RequiresPaymentMethod),
        _ => Settled::NotHonoured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_is_exactly_the_states_with_a_call_due() {
        use sea_orm::Iterable;
        for state in CheckoutState::iter() {
            assert_eq!(
                OUTBOX.contains(&state),
                StripeCall::due(state).is_some(),
                "{state:?}"
            );
        }
    }

    #[test]
    fn each_call_ends_in_its_state() {
        assert_eq!(
            StripeCall::due(CheckoutState::Booked).map(StripeCall::done),
            Some(CheckoutState::Captured)
        );
        assert_eq!(
            StripeCall::due(CheckoutState::Cancelling).map(StripeCall::done),
            Some(CheckoutState::Cancelled)
        );
        assert_eq!(
            StripeCall::due(CheckoutState::Refunding).map(StripeCall::done),
            Some(CheckoutState::Refunded)
        );
        for call in [
            StripeCall::Capture,
            StripeCall::CancelAuthorisation,
            StripeCall::Refund,
        ] {
            assert_eq!(
                StripeCall::due(call.done()),
                None,
                "a finished call leaves nothing due"
            );
        }
    }

    #[test]
    fn an_intent_is_paid_failed_or_pending() {
        assert_eq!(
            on_intent(&IntentStatus::RequiresCapture, false),
            IntentOutcome::Paid { captured: false }
        );
        assert_eq!(
            on_intent(&IntentStatus::Succeeded, false),
            IntentOutcome::Paid { captured: true }
        );
        assert_eq!(
            on_intent(&IntentStatus::Canceled, false),
            IntentOutcome::Failed(CheckoutState::Cancelled)
        );
        assert_eq!(
            on_intent(&IntentStatus::RequiresPaymentMethod, true),
            IntentOutcome::Failed(CheckoutState::Failed)
        );
        assert_eq!(
            on_intent(&IntentStatus::RequiresPaymentMethod, false),
            IntentOutcome::Pending(IntentStatus::RequiresPaymentMethod)
        );
        assert_eq!(
            on_intent(&IntentStatus::Processing, true),
            IntentOutcome::Pending(IntentStatus::Processing)
        );
    }

    #[test]
    fn money_for_a_hold_that_cannot_be_honoured_goes_back() {
        assert_eq!(after_payment(false, true), CheckoutState::Booked);
        assert_eq!(after_payment(true, true), CheckoutState::Captured);
        assert_eq!(after_payment(false, false), CheckoutState::Cancelling);
        assert_eq!(after_payment(true, false), CheckoutState::Refunding);
    }

    #[test]
    fn cancelling_a_paid_booking_returns_the_money_the_right_way() {
        assert_eq!(
            on_booking_cancelled(CheckoutState::Booked),
            CheckoutState::Cancelling
        );
        assert_eq!(
            on_booking_cancelled(CheckoutState::Captured),
            CheckoutState::Refunding
        );
        assert_eq!(
            on_booking_cancelled(CheckoutState::Refunding),
            CheckoutState::Refunding
        );
    }

    #[test]
    fn a_refused_call_ends_where_the_intent_really_is() {
        assert_eq!(
            after_refusal(CheckoutState::Booked, &IntentStatus::Succeeded),
            AfterRefusal::Done(CheckoutState::Captured)
        );
        assert_eq!(
            after_refusal(CheckoutState::Cancelling, &IntentStatus::Canceled),
            AfterRefusal::Done(CheckoutState::Cancelled)
        );
        assert_eq!(
            after_refusal(CheckoutState::Cancelling, &IntentStatus::Succeeded),
            AfterRefusal::Move(CheckoutState::Refunding)
        );
        assert_eq!(
            after_refusal(CheckoutState::Booked, &IntentStatus::Canceled),
            AfterRefusal::CancelBooking
        );
        assert_eq!(
            after_refusal(CheckoutState::Booked, &IntentStatus::RequiresPaymentMethod),
            AfterRefusal::CancelBooking
        );
        assert_eq!(
            after_refusal(CheckoutState::Refunding, &IntentStatus::Succeeded),
            AfterRefusal::Retry
        );
    }

    #[test]
    fn a_decided_checkout_reads_back_as_its_outcome() {
        assert_eq!(
            settled_of(CheckoutState::Booked, Some("b")),
            Settled::Booked("b".into())
        );
        assert_eq!(
            settled_of(CheckoutState::Captured, None),
            Settled::NotHonoured
        );
        assert_eq!(settled_of(CheckoutState::Failed, None), Settled::Failed);
        assert_eq!(settled_of(CheckoutState::Cancelled, None), Settled::Failed);
        assert_eq!(
            settled_of(CheckoutState::Cancelled, Some("b")),
            Settled::NotHonoured
        );
        assert_eq!(
            settled_of(CheckoutState::Refunding, None),
            Settled::NotHonoured
        );
        assert_eq!(
            settled_of(CheckoutState::Pending, None),
            Settled::Pending(IntentStatus::RequiresPaymentMethod)
        );
    }
}
