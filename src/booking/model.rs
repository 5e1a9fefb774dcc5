//! Domain values of the booking layer: what the service returns, independent of both the
//! tables and the GraphQL schema.

use crate::error::AppError;

/// Milliseconds since the Unix epoch, the one clock of the service.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatus {
    Available,
    Held,
    Booked,
}

impl SeatStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Held => "HELD",
            Self::Booked => "BOOKED",
        }
    }

    /// The status a stored seat shows at `now`: a hold past its expiry no longer counts.
    pub fn of(seat: &entity::seat::Model, now: i64) -> Self {
        match seat.status.as_str() {
            "BOOKED" => Self::Booked,
            "HELD" if seat.hold_expires_at_ms.is_some_and(|t| t > now) => Self::Held,
            _ => Self::Available,
        }
    }

    pub fn parse(raw: &str) -> Self {
        match raw {
            "BOOKED" => Self::Booked,
            "HELD" => Self::Held,
            _ => Self::Available,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldStatus {
    Active,
    Confirmed,
    Released,
    Expired,
}

impl HoldStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Confirmed => "CONFIRMED",
            Self::Released => "RELEASED",
            Self::Expired => "EXPIRED",
        }
    }

    /// The status a stored hold shows at `now`: an active hold past its expiry is expired.
    pub fn of(hold: &entity::hold::Model, now: i64) -> Self {
        match hold.status.as_str() {
            "CONFIRMED" => Self::Confirmed,
            "RELEASED" => Self::Released,
            "EXPIRED" => Self::Expired,
            _ if hold.expires_at_ms <= now => Self::Expired,
            _ => Self::Active,
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "ACTIVE" => Self::Active,
            "CONFIRMED" => Self::Confirmed,
            "RELEASED" => Self::Released,
            "EXPIRED" => Self::Expired,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookingStatus {
    Confirmed,
    Cancelled,
    Refunded,
}

impl BookingStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
            Self::Refunded => "REFUNDED",
        }
    }

    pub fn parse(raw: &str) -> Self {
        match raw {
            "CANCELLED" => Self::Cancelled,
            "REFUNDED" => Self::Refunded,
            _ => Self::Confirmed,
        }
    }
}

/// A seat as clients see it at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatView {
    pub id: i64,
    pub section: String,
    pub row: String,
    pub number: i32,
    pub price_cents: i64,
    pub status: SeatStatus,
    pub hold_expires_at_ms: Option<i64>,
}

impl SeatView {
    pub fn of(seat: &entity::seat::Model, now: i64) -> Self {
        let status = SeatStatus::of(seat, now);
        Self {
            id: seat.id,
            section: seat.section.clone(),
            row: seat.row_label.clone(),
            number: seat.number,
            price_cents: seat.price_cents,
            status,
            hold_expires_at_ms: (status == SeatStatus::Held)
                .then_some(seat.hold_expires_at_ms)
                .flatten(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct EventView {
    pub id: i64,
    pub name: String,
    pub venue: String,
    pub starts_at_ms: i64,
    pub seat_count: i64,
    pub available: i64,
    pub held: i64,
    pub booked: i64,
}

#[derive(Clone, Debug)]
pub struct SeatMapView {
    pub event: EventView,
    pub seats: Vec<SeatView>,
    pub seq: i64,
}

#[derive(Clone, Debug)]
pub struct HoldView {
    pub id: String,
    pub event_id: i64,
    pub user_id: String,
    pub seats: Vec<SeatView>,
    pub status: HoldStatus,
    pub expires_at_ms: i64,
    pub total_cents: i64,
}

#[derive(Clone, Debug)]
pub struct BookingView {
    pub id: String,
    pub event_id: i64,
    pub hold_id: String,
    pub user_id: String,
    pub seats: Vec<SeatView>,
    pub status: BookingStatus,
    pub total_cents: i64,
    pub payment_intent_id: Option<String>,
    pub created_at_ms: i64,
}

/// A numeric id (events, seats) as sent by a client. A malformed id names nothing, so it is
/// `NOT_FOUND` rather than a crash or a silent zero.
pub fn parse_numeric_id(raw: &str, what: &str) -> Result<i64, AppError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::NotFound(format!("{what} {raw:?} does not exist")))
}

/// A UUID id (holds, bookings) as sent by a client, normalised to lowercase.
pub fn parse_uuid_id(raw: &str, what: &str) -> Result<String, AppError> {
    uuid::Uuid::parse_str(raw.trim())
        .map(|u| u.to_string())
        .map_err(|_| AppError::NotFound(format!("{what} {raw:?} does not exist")))
}

/// A client's idempotency key: 1 to 200 printable characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: Option<String>) -> Result<Option<Self>, AppError> {
        match raw {
            None => Ok(None),
            Some(key) if key.is_empty() || key.len() > 200 || key.chars().any(char::is_control) => {
                Err(AppError::BadInput(
                    "idempotencyKey must be 1 to 200 printable characters".into(),
                ))
            }
            Some(key) => Ok(Some(Self(key))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated list of seat ids for one hold: non-empty, no duplicates, at most the limit,
/// sorted ascending (the order in which rows are locked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatIds(Vec<i64>);

impl SeatIds {
    pub fn parse(raw: &[String], max: usize) -> Result<Self, AppError> {
        if raw.is_empty() {
            return Err(AppError::BadInput("seatIds must not be empty".into()));
        }
        if raw.len() > max {
            return Err(AppError::BadInput(format!(
                "at most {max} seats can be held at once"
            )));
        }
        let mut ids = raw
            .iter()
            .map(|id| parse_numeric_id(id, "seat"))
            .collect::<Result<Vec<_>, _>>()?;
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        if ids.len() != before {
            return Err(AppError::BadInput("seatIds contains a seat twice".into()));
        }
        Ok(Self(ids))
    }

    pub fn as_slice(&self) -> &[i64] {
        &self.0
    }
}

/// How many seats `holdBestAvailable` should find: 1 to the per-hold limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeatCount(usize);

impl SeatCount {
    pub fn parse(raw: i32, max: usize) -> Result<Self, AppError> {
        if raw < 1 {
            return Err(AppError::BadInput("count must be at least 1".into()));
        }
        let count = usize::try_from(raw).unwrap_or(usize::MAX);
        if count > max {
            return Err(AppError::BadInput(format!(
                "at most {max} seats can be held at once"
            )));
        }
        Ok(Self(count))
    }

    pub fn get(self) -> usize {
        self.0
    }
}

/// A name or label typed by an admin: trimmed, 1 to `max` characters, no control characters.
pub fn parse_label(raw: &str, what: &str, max: usize) -> Result<String, AppError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(AppError::BadInput(format!("{what} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(AppError::BadInput(format!(
            "{what} must be at most {max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::BadInput(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(value.to_owned())
}
