//! Client input, parsed once at the edge ("parse, don't validate"): ids, seat lists, counts,
//! idempotency keys and labels. A value of these types is known good.

use super::limits::IDEMPOTENCY_KEY_MAX_BYTES;
use crate::error::AppError;

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

/// A client's idempotency key: 1 to [`IDEMPOTENCY_KEY_MAX_BYTES`] printable characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: Option<String>) -> Result<Option<Self>, AppError> {
        match raw {
            None => Ok(None),
            Some(key)
                if key.is_empty()
                    || key.len() > IDEMPOTENCY_KEY_MAX_BYTES
                    || key.chars().any(char::is_control) =>
            {
                Err(AppError::BadInput(format!(
                    "idempotencyKey must be 1 to {IDEMPOTENCY_KEY_MAX_BYTES} printable characters"
                )))
            }
            Some(key) => Ok(Some(Self(key))),
        }
    }

    /// A key the server makes itself (e.g. a queued request's id).
    pub fn internal(key: String) -> Self {
        Self(key)
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

    /// No seats: for a hold of general-admission places only (the caller has checked that
    /// places are asked for).
    pub fn none() -> Self {
        Self(Vec::new())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn numeric_ids_must_be_positive_integers() {
        assert_eq!(parse_numeric_id(" 42 ", "seat").ok(), Some(42));
        for bad in ["0", "-1", "1.5", "abc", "", "99999999999999999999"] {
            assert!(
                matches!(parse_numeric_id(bad, "seat"), Err(AppError::NotFound(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn uuid_ids_are_normalised_to_lowercase() {
        let upper = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        assert_eq!(
            parse_uuid_id(upper, "hold").ok().as_deref(),
            Some("6f9619ff-8b86-d011-b42d-00c04fc964ff")
        );
        assert!(matches!(
            parse_uuid_id("nope", "hold"),
            Err(AppError::NotFound(_))
        ));
    }

    #[test]
    fn seat_ids_are_sorted_unique_and_bounded() {
        let ids = SeatIds::parse(&strings(&["3", "1", "2"]), 10).expect("valid");
        assert_eq!(ids.as_slice(), &[1, 2, 3]);
        assert!(matches!(
            SeatIds::parse(&[], 10),
            Err(AppError::BadInput(_))
        ));
        assert!(matches!(
            SeatIds::parse(&strings(&["1", "1"]), 10),
            Err(AppError::BadInput(_))
        ));
        assert!(matches!(
            SeatIds::parse(&strings(&["1", "2", "3"]), 2),
            Err(AppError::BadInput(_))
        ));
        assert!(matches!(
            SeatIds::parse(&strings(&["1", "x"]), 10),
            Err(AppError::NotFound(_))
        ));
    }

    #[test]
    fn seat_counts_run_from_one_to_the_limit() {
        assert_eq!(SeatCount::parse(4, 10).map(SeatCount::get).ok(), Some(4));
        assert!(SeatCount::parse(0, 10).is_err());
        assert!(SeatCount::parse(-3, 10).is_err());
        assert!(SeatCount::parse(11, 10).is_err());
    }

    #[test]
    fn idempotency_keys_are_printable_and_bounded() {
        assert!(matches!(IdempotencyKey::parse(None), Ok(None)));
        assert_eq!(
            IdempotencyKey::parse(Some("k-1".into()))
                .ok()
                .flatten()
                .map(|k| k.as_str().to_owned()),
            Some("k-1".to_owned())
        );
        for bad in [
            String::new(),
            "a\nb".into(),
            "x".repeat(IDEMPOTENCY_KEY_MAX_BYTES + 1),
        ] {
            assert!(IdempotencyKey::parse(Some(bad)).is_err());
        }
        assert!(IdempotencyKey::parse(Some("x".repeat(IDEMPOTENCY_KEY_MAX_BYTES))).is_ok());
    }

    #[test]
    fn labels_are_trimmed_non_empty_bounded_and_printable() {
        assert_eq!(
            parse_label("  Stalls ", "section", 10).ok().as_deref(),
            Some("Stalls")
        );
        assert!(parse_label("   ", "section", 10).is_err());
        assert!(parse_label("élévation!", "section", 10).is_ok());
        assert!(parse_label("élévation!!", "section", 10).is_err());
        assert!(parse_label("a\u{0}b", "section", 10).is_err());
    }
}
