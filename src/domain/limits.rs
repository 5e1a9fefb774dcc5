//! Limits on what clients and admins may send, and the timings the services share. One place,
//! so a limit is stated once and its error message can name it.

use std::time::Duration;

/// Longest event name and venue, in characters.
pub const EVENT_NAME_MAX_CHARS: usize = 200;
/// Longest section name, in characters (also what `section:` arguments may be).
pub const SECTION_NAME_MAX_CHARS: usize = 100;
/// Longest category colour (a CSS colour such as `#1e90ff`), in characters.
pub const COLOR_MAX_CHARS: usize = 32;
/// Most seats one `blockSeats` or `unblockSeats` names.
pub const MAX_SEATS_PER_BLOCK: usize = 1_000;
/// Longest reason an organizer gives for blocking seats, in characters.
pub const BLOCKED_REASON_MAX_CHARS: usize = 200;
/// Longest row label, in characters.
pub const ROW_LABEL_MAX_CHARS: usize = 50;
/// Most seats one event may have.
pub const MAX_SEATS_PER_EVENT: usize = 50_000;
/// Most seats in one row.
pub const MAX_SEATS_PER_ROW: i32 = 1_000;
/// Highest seat price, in cents.
pub const MAX_PRICE_CENTS: i32 = 100_000_000;
/// Latest instant an event may start: RFC 3339 has four-digit years, so every client can read
/// back what it sent (9999-12-31T23:59:59.999Z).
pub const LATEST_INSTANT_MS: i64 = 253_402_300_799_999;
/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 200;
/// Longest user id (`sub` claim), in bytes.
pub const USER_ID_MAX_BYTES: usize = 200;

/// Longest a hold may last from its creation, however often it is extended.
pub const MAX_HOLD_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);
/// Most extensions an event may allow per hold.
pub const MAX_HOLD_EXTENSIONS: i32 = 100;

/// Most rows a "my holds" or "my bookings" list returns.
pub const MY_LIST_LIMIT: u64 = 500;
/// Most expired holds one sweep pass handles.
pub const SWEEP_BATCH: u64 = 200;
/// Seats inserted per statement when an event is created.
pub const SEAT_INSERT_CHUNK: usize = 1_000;

/// What a client is told to wait when the server sheds load.
pub const SHED_RETRY_AFTER_MS: u64 = 200;
/// What a client is told to wait when the database says "try again" (before our retries).
pub const DB_BUSY_RETRY_AFTER_MS: u64 = 50;
/// What a client is told to wait when the payment provider does not answer.
pub const PAYMENT_RETRY_AFTER_MS: u64 = 1_000;
/// How long the checkout worker leases a checkout while it makes a Stripe call.
pub const OUTBOX_LEASE: Duration = Duration::from_secs(30);
/// First backoff of a failed Stripe call; it doubles per attempt up to [`OUTBOX_MAX_DOUBLINGS`].
pub const OUTBOX_BACKOFF: Duration = Duration::from_secs(1);
pub const OUTBOX_MAX_DOUBLINGS: i32 = 6;

/// Failed ticket look-ups (`checkIn`, `ticket`) one admin may make per
/// [`TICKET_FAILURE_WINDOW`] before being told to retry later: enough for a busy door with
/// smudged codes, far too few to guess a 128-bit code.
pub const TICKET_FAILURES_PER_WINDOW: usize = 20;
pub const TICKET_FAILURE_WINDOW: Duration = Duration::from_secs(10);
