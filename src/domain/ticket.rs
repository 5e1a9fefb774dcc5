//! Tickets at the door: their codes, why one is refused, and the window that slows down
//! whoever guesses codes.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// RFC 4648 base32: upper-case letters and the digits 2 to 7.
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Random bytes behind a code: 128 bits.
const CODE_BYTES: usize = 16;
/// Characters of a code: 128 bits in 5-bit characters.
pub const CODE_CHARS: usize = 26;

/// A ticket code: [`CODE_CHARS`] characters of base32 over 16 bytes from the OS RNG.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TicketCode(String);

impl TicketCode {
    /// A fresh code; fails only when the OS has no randomness to give.
    pub fn generate() -> Result<Self, rand::rand_core::OsError> {
        use rand::TryRngCore;
        let mut bytes = [0u8; CODE_BYTES];
        rand::rngs::OsRng.try_fill_bytes(&mut bytes)?;
        Ok(Self(base32(&bytes)))
    }

    /// What a scanner or an organizer typed, if it can be a code at all: letters and digits
    /// of the right length, in either case. `None` is an unknown code.
    pub fn parse(raw: &str) -> Option<Self> {
        let code = raw.trim().to_ascii_uppercase();
        (code.len() == CODE_CHARS && code.bytes().all(|b| ALPHABET.contains(&b)))
            .then_some(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `bytes` in base32 without padding.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Why a ticket does not let anyone in (`extensions.reason` of `TICKET_INVALID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketInvalid {
    /// No ticket has this code.
    Unknown,
    /// The ticket is for another event.
    OtherEvent,
    /// Its booking was cancelled.
    BookingCancelled,
    /// Its booking was refunded.
    BookingRefunded,
}

impl TicketInvalid {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::OtherEvent => "OTHER_EVENT",
            Self::BookingCancelled => "BOOKING_CANCELLED",
            Self::BookingRefunded => "BOOKING_REFUNDED",
        }
    }
}

/// Failed look-ups per caller in a sliding window: at most `limit` within `window`; beyond
/// that the caller waits until the oldest one leaves the window. Pure: the caller passes the
/// time, so the rule is tested without clocks.
#[derive(Debug)]
pub struct FailureWindow {
    limit: usize,
    window: Duration,
    failures: HashMap<String, VecDeque<Instant>>,
}

impl FailureWindow {
    pub fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            failures: HashMap::new(),
        }
    }

    fn forget_old(&mut self, who: &str, now: Instant) {
        let window = self.window;
        if let Some(times) = self.failures.get_mut(who) {
            while times
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= window)
            {
                times.pop_front();
            }
            if times.is_empty() {
                self.failures.remove(who);
            }
        }
    }

    /// `Err(wait)` while `who` has used up their failures: how long until one more is allowed.
    pub fn check(&mut self, who: &str, now: Instant) -> Result<(), Duration> {
        self.forget_old(who, now);
        match self.failures.get(who) {
            Some(times) if times.len() >= self.limit => {
                let oldest = times.front().copied().unwrap_or(now);
                Err(self
                    .window
                    .saturating_sub(now.saturating_duration_since(oldest)))
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure of `who` at `now`.
    pub fn record(&mut self, who: &str, now: Instant) {
        self.forget_old(who, now);
        // Callers who stopped failing are forgotten now and then, so memory stays bounded.
        if self.failures.len() > 10_000 {
            let window = self.window;
            self.failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
        self.failures
            .entry(who.to_owned())
            .or_default()
            .push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_26_base32_characters_and_distinct() {
        let a = TicketCode::generate().expect("randomness");
        let b = TicketCode::generate().expect("randomness");
        assert_eq!(a.as_str().len(), CODE_CHARS);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_eq!(TicketCode::parse(a.as_str()), Some(a.clone()));
        assert_eq!(TicketCode::parse(&a.as_str().to_ascii_lowercase()), Some(a));
    }

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(&[0xff; 16]), "77777777777777777777777774");
        assert_eq!(base32(&[0; 16]).len(), CODE_CHARS);
    }

    #[test]
    fn parse_refuses_what_cannot_be_a_code() {
        assert_eq!(TicketCode::parse(""), None);
        assert_eq!(TicketCode::parse("ABC"), None);
        assert_eq!(TicketCode::parse(&"A".repeat(27)), None);
        assert_eq!(TicketCode::parse(&format!("{}1", "A".repeat(25))), None);
        assert_eq!(TicketCode::parse(&format!("{}-", "A".repeat(25))), None);
    }

    #[test]
    fn failures_beyond_the_limit_wait_for_the_oldest_to_leave_the_window() {
        let start = Instant::now();
        let mut window = FailureWindow::new(3, Duration::from_secs(10));
        for i in 0..3 {
            assert_eq!(window.check("a", start + Duration::from_secs(i)), Ok(()));
            window.record("a", start + Duration::from_secs(i));
        }
        assert_eq!(
            window.check("a", start + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        assert_eq!(window.check("b", start + Duration::from_secs(4)), Ok(()));
        assert_eq!(window.check("a", start + Duration::from_secs(10)), Ok(()));
    }
}
