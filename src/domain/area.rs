//! General-admission areas: their counts as clients see them, the change the bus carries, and
//! the `areas:` argument of a hold, parsed once.

use std::collections::HashSet;

use super::input::{SeatIds, parse_numeric_id};
use crate::error::AppError;

/// An area's counts at one moment (`capacity = available + held + booked + blocked`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaView {
    pub id: i64,
    pub event_id: i64,
    pub name: String,
    pub category_id: i64,
    pub capacity: i64,
    pub held: i64,
    pub booked: i64,
    pub blocked: i64,
    pub version: i64,
}

impl AreaView {
    /// The stored row; `run_out`: places of holds that have expired but not been swept yet,
    /// which are free to hold now and so show as available.
    pub fn of(area: &entity::area::Model, run_out: i64) -> Self {
        let run_out = run_out.clamp(0, area.held);
        Self {
            id: area.id,
            event_id: area.event_id,
            name: area.name.clone(),
            category_id: area.category_id,
            capacity: area.capacity,
            held: area.held - run_out,
            booked: area.booked,
            blocked: area.blocked,
            version: area.version,
        }
    }

    pub fn available(&self) -> i64 {
        self.capacity - self.held - self.booked - self.blocked
    }

    /// The committed counts as the bus carries them.
    pub fn change(&self) -> AreaChange {
        AreaChange {
            event_id: self.event_id,
            area_id: self.id,
            available: self.available(),
            held: self.held,
            booked: self.booked,
            blocked: self.blocked,
            version: self.version,
        }
    }
}

/// Places of one area in a hold or a booking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldAreaView {
    pub area_id: i64,
    pub quantity: i64,
    /// One place.
    pub price_cents: i64,
}

/// An area's counts after a committed change; `version` only increases per area.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AreaChange {
    pub event_id: i64,
    pub area_id: i64,
    pub available: i64,
    pub held: i64,
    pub booked: i64,
    pub blocked: i64,
    pub version: i64,
}

/// The places a hold asks for: each area once, at least one place each, in ascending area id
/// (the order in which area rows are locked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AreaQuantities(Vec<(i64, i64)>);

impl AreaQuantities {
    pub fn parse(raw: &[(String, i32)]) -> Result<Self, AppError> {
        let mut seen = HashSet::new();
        let mut wanted = Vec::with_capacity(raw.len());
        for (id, quantity) in raw {
            let id = parse_numeric_id(id, "area")?;
            if *quantity < 1 {
                return Err(AppError::BadInput(format!(
                    "the quantity of area {id} must be at least 1"
                )));
            }
            if !seen.insert(id) {
                return Err(AppError::BadInput(format!("area {id} appears twice")));
            }
            wanted.push((id, i64::from(*quantity)));
        }
        wanted.sort_unstable();
        Ok(Self(wanted))
    }

    /// `(area id, quantity)`, ascending by area id.
    pub fn as_slice(&self) -> &[(i64, i64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Places asked for in all.
    pub fn places(&self) -> usize {
        self.0
            .iter()
            .map(|(_, q)| usize::try_from(*q).unwrap_or(usize::MAX))
            .fold(0, usize::saturating_add)
    }
}

/// The seats of a hold that may also ask for places: `seatIds` may be empty only then, so
/// asking for nothing at all is `BAD_USER_INPUT`.
pub fn hold_seat_ids(
    raw: &[String],
    max: usize,
    areas: &AreaQuantities,
) -> Result<SeatIds, AppError> {
    if raw.is_empty() && !areas.is_empty() {
        Ok(SeatIds::none())
    } else {
        SeatIds::parse(raw, max)
    }
}

/// What a queued request asks for, in the one text field the queue keeps: the seat ids
/// comma-separated as before, then `|` and `areaId:quantity` pairs when it asks for places.
pub fn encode_wanted(seats: &SeatIds, areas: &AreaQuantities) -> String {
    let seats: Vec<String> = seats.as_slice().iter().map(i64::to_string).collect();
    let mut text = seats.join(",");
    if !areas.is_empty() {
        let places: Vec<String> = areas
            .as_slice()
            .iter()
            .map(|(id, q)| format!("{id}:{q}"))
            .collect();
        text.push('|');
        text.push_str(&places.join(","));
    }
    text
}

/// The raw seat ids and `(area id, quantity)` pairs of [`encode_wanted`]'s text, to be
/// parsed as a client's would be.
pub fn decode_wanted(text: &str) -> (Vec<String>, Vec<(String, i32)>) {
    let (seats, places) = text.split_once('|').unwrap_or((text, ""));
    let seats = seats
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let places = places
        .split(',')
        .filter_map(|p| p.split_once(':'))
        .map(|(id, q)| (id.to_owned(), q.parse().unwrap_or(0)))
        .collect();
    (seats, places)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_request_keeps_its_seats_and_places() {
        let seats = SeatIds::parse(&["4".to_owned(), "2".to_owned()], 10).expect("seats");
        let areas = AreaQuantities::parse(&raw(&[("9", 3)])).expect("areas");
        let text = encode_wanted(&seats, &areas);
        assert_eq!(text, "2,4|9:3");
        let (s, a) = decode_wanted(&text);
        assert_eq!(
            (s, a),
            (vec!["2".to_owned(), "4".to_owned()], raw(&[("9", 3)]))
        );
        assert_eq!(encode_wanted(&seats, &AreaQuantities::default()), "2,4");
        assert_eq!(
            decode_wanted("2,4"),
            (vec!["2".to_owned(), "4".to_owned()], vec![])
        );
        assert_eq!(decode_wanted("|9:1"), (vec![], raw(&[("9", 1)])));
        assert!(hold_seat_ids(&[], 10, &AreaQuantities::default()).is_err());
        assert!(hold_seat_ids(&[], 10, &areas).is_ok_and(|s| s.as_slice().is_empty()));
    }

    fn raw(items: &[(&str, i32)]) -> Vec<(String, i32)> {
        items.iter().map(|(id, q)| ((*id).to_owned(), *q)).collect()
    }

    #[test]
    fn areas_are_sorted_and_counted() {
        let wanted = AreaQuantities::parse(&raw(&[("7", 2), ("3", 1)])).expect("valid");
        assert_eq!(wanted.as_slice(), &[(3, 1), (7, 2)]);
        assert_eq!(wanted.places(), 3);
        assert!(AreaQuantities::parse(&[]).expect("valid").is_empty());
    }

    #[test]
    fn repeats_and_empty_quantities_are_refused() {
        assert!(matches!(
            AreaQuantities::parse(&raw(&[("3", 1), ("3", 2)])),
            Err(AppError::BadInput(_))
        ));
        assert!(matches!(
            AreaQuantities::parse(&raw(&[("3", 0)])),
            Err(AppError::BadInput(_))
        ));
        assert!(matches!(
            AreaQuantities::parse(&raw(&[("x", 1)])),
            Err(AppError::NotFound(_))
        ));
    }

    #[test]
    fn run_out_places_show_as_available() {
        let row = entity::area::Model {
            id: 1,
            event_id: 2,
            name: "Floor".into(),
            category_id: 3,
            capacity: 10,
            held: 4,
            booked: 3,
            blocked: 1,
            version: 9,
        };
        let view = AreaView::of(&row, 3);
        assert_eq!((view.held, view.available()), (1, 5));
        assert_eq!(AreaView::of(&row, 99).held, 0);
    }
}
