//! A new event as an admin describes it, and the checks it must pass before any row is
//! written.

use std::collections::HashSet;

use crate::domain::input::parse_label;
use crate::domain::limits::{
    COLOR_MAX_CHARS, EVENT_NAME_MAX_CHARS, LATEST_INSTANT_MS, MAX_HOLD_EXTENSIONS, MAX_PRICE_CENTS,
    MAX_SEATS_PER_EVENT, MAX_SEATS_PER_ROW, ROW_LABEL_MAX_CHARS, SECTION_NAME_MAX_CHARS,
};
use crate::domain::sale::BuyerLimits;
use crate::domain::status::EventStatus;
use crate::error::AppError;
use entity::event;

/// A new event as an admin describes it.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub name: String,
    pub venue: String,
    pub starts_at_ms: i64,
    pub sections: Vec<NewSection>,
    pub sale: SaleSettings,
    pub limits: BuyerLimits,
    pub categories: Vec<NewCategory>,
    pub areas: Vec<NewArea>,
}

/// A general-admission area: a capacity of places of one category.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewArea {
    pub name: String,
    pub capacity: i32,
    /// A category name of the event.
    pub category: String,
}

/// An area whose fields have been checked; `category` indexes the event's categories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidArea {
    pub name: String,
    pub capacity: i64,
    pub category: usize,
}

/// A price category; rows name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCategory {
    pub name: String,
    pub price_cents: i32,
    pub color: Option<String>,
}

/// An event's status, sales window and how often a hold may be extended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaleSettings {
    pub status: EventStatus,
    pub sales_start_at_ms: Option<i64>,
    pub sales_end_at_ms: Option<i64>,
    pub max_hold_extensions: i32,
}

impl Default for SaleSettings {
    fn default() -> Self {
        Self {
            status: EventStatus::OnSale,
            sales_start_at_ms: None,
            sales_end_at_ms: None,
            max_hold_extensions: 1,
        }
    }
}

/// A change to an event: `None` leaves a field as it is; for a field that may be unset,
/// `Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct EventUpdate {
    pub name: Option<String>,
    pub venue: Option<String>,
    pub starts_at_ms: Option<i64>,
    pub sales_start_at_ms: Option<Option<i64>>,
    pub sales_end_at_ms: Option<Option<i64>>,
    pub max_seats_per_order: Option<Option<i32>>,
    pub max_seats_per_buyer: Option<Option<i32>>,
    pub max_hold_extensions: Option<i32>,
}

impl EventUpdate {
    /// `current` with this change applied, checked as a new event's fields are.
    pub fn apply(&self, current: event::Model) -> Result<event::Model, AppError> {
        let mut next = current;
        if let Some(name) = &self.name {
            next.name = parse_label(name, "name", EVENT_NAME_MAX_CHARS)?;
        }
        if let Some(venue) = &self.venue {
            next.venue = parse_label(venue, "venue", EVENT_NAME_MAX_CHARS)?;
        }
        if let Some(starts_at_ms) = self.starts_at_ms {
            next.starts_at_ms = check_instant(starts_at_ms, "startsAt")?;
        }
        if let Some(start) = self.sales_start_at_ms {
            next.sales_start_at_ms = start;
        }
        if let Some(end) = self.sales_end_at_ms {
            next.sales_end_at_ms = end;
        }
        if let Some(limit) = self.max_seats_per_order {
            next.max_seats_per_order = limit;
        }
        if let Some(limit) = self.max_seats_per_buyer {
            next.max_seats_per_buyer = limit;
        }
        if let Some(allowed) = self.max_hold_extensions {
            next.max_hold_extensions = check_extensions(allowed)?;
        }
        check_window(next.sales_start_at_ms, next.sales_end_at_ms)?;
        check_limits(BuyerLimits::of(&next))?;
        Ok(next)
    }
}

/// Category names are unique labels, prices in range, colours short labels.
fn check_categories(categories: Vec<NewCategory>) -> Result<Vec<NewCategory>, AppError> {
    let mut names = HashSet::new();
    categories
        .into_iter()
        .map(|c| {
            let name = parse_label(&c.name, "category name", SECTION_NAME_MAX_CHARS)?;
            if !names.insert(name.clone()) {
                return Err(AppError::BadInput(format!(
                    "category {name:?} appears twice"
                )));
            }
            if !(0..=MAX_PRICE_CENTS).contains(&c.price_cents) {
                return Err(AppError::BadInput(format!(
                    "priceCents must be between 0 and {MAX_PRICE_CENTS}"
                )));
            }
            let color = c
                .color
                .map(|color| parse_label(&color, "color", COLOR_MAX_CHARS))
                .transpose()?;
            Ok(NewCategory {
                name,
                price_cents: c.price_cents,
                color,
            })
        })
        .collect()
}

/// The row's category (an index into `categories`) and its seats' price.
fn row_price(row: &NewRow, categories: &[NewCategory]) -> Result<(Option<usize>, i64), AppError> {
    let Some(name) = &row.category else {
        return Ok((None, i64::from(row.price_cents)));
    };
    let name = name.trim();
    let index = categories
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| AppError::BadInput(format!("there is no category {name:?}")))?;
    let price = categories[index].price_cents;
    if row.price_cents != 0 && row.price_cents != price {
        return Err(AppError::BadInput(format!(
            "row {:?} of category {name:?} must have priceCents 0 or {price}",
            row.label
        )));
    }
    Ok((Some(index), i64::from(price)))
}

fn check_instant(ms: i64, field: &str) -> Result<i64, AppError> {
    if (0..=LATEST_INSTANT_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(AppError::BadInput(format!(
            "{field} must be between 1970 and 9999"
        )))
    }
}

/// Limits, where given, allow at least one seat.
fn check_limits(limits: BuyerLimits) -> Result<(), AppError> {
    for (value, name) in [
        (limits.per_order, "maxSeatsPerOrder"),
        (limits.per_buyer, "maxSeatsPerBuyer"),
    ] {
        if value.is_some_and(|v| v < 1) {
            return Err(AppError::BadInput(format!("{name} must be at least 1")));
        }
    }
    Ok(())
}

fn check_extensions(allowed: i32) -> Result<i32, AppError> {
    if (0..=MAX_HOLD_EXTENSIONS).contains(&allowed) {
        Ok(allowed)
    } else {
        Err(AppError::BadInput(format!(
            "maxHoldExtensions must be between 0 and {MAX_HOLD_EXTENSIONS}"
        )))
    }
}

/// Both ends, where given, are valid instants and the window is not empty.
fn check_window(start: Option<i64>, end: Option<i64>) -> Result<(), AppError> {
    if let Some(start) = start {
        check_instant(start, "salesStartAt")?;
    }
    if let Some(end) = end {
        check_instant(end, "salesEndAt")?;
    }
    match (start, end) {
        (Some(start), Some(end)) if start >= end => Err(AppError::BadInput(
            "salesStartAt must be before salesEndAt".into(),
        )),
        _ => Ok(()),
    }
}

#[derive(Clone, Debug)]
pub struct NewSection {
    pub name: String,
    pub rows: Vec<NewRow>,
}

#[derive(Clone, Debug)]
pub struct NewRow {
    pub label: String,
    pub seats: i32,
    pub price_cents: i32,
    /// A category name: the row's seats take its price (`price_cents` must be 0 or that).
    pub category: Option<String>,
    /// Numbers of the row's accessible seats.
    pub accessible: Vec<i32>,
}

/// One seat of a checked event, in layout order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSeat {
    pub section: String,
    pub row: String,
    pub number: i32,
    pub price_cents: i64,
    /// Index into the event's categories.
    pub category: Option<usize>,
    pub accessible: bool,
}

/// A new event whose every field has been checked.
#[derive(Clone, Debug)]
pub struct ValidEvent {
    pub name: String,
    pub venue: String,
    pub starts_at_ms: i64,
    pub seats: Vec<NewSeat>,
    pub sale: SaleSettings,
    pub limits: BuyerLimits,
    pub categories: Vec<NewCategory>,
    pub areas: Vec<ValidArea>,
}

/// Area names are unique labels, capacities at least 1 and each names a category.
fn check_areas(
    areas: Vec<NewArea>,
    categories: &[NewCategory],
) -> Result<Vec<ValidArea>, AppError> {
    let mut names = HashSet::new();
    areas
        .into_iter()
        .map(|a| {
            let name = parse_label(&a.name, "area name", SECTION_NAME_MAX_CHARS)?;
            if !names.insert(name.clone()) {
                return Err(AppError::BadInput(format!("area {name:?} appears twice")));
            }
            let most = i32::try_from(MAX_SEATS_PER_EVENT).unwrap_or(i32::MAX);
            if !(1..=most).contains(&a.capacity) {
                return Err(AppError::BadInput(format!(
                    "the capacity of area {name:?} must be between 1 and {most}"
                )));
            }
            let wanted = a.category.trim();
            let category = categories
                .iter()
                .position(|c| c.name == wanted)
                .ok_or_else(|| AppError::BadInput(format!("there is no category {wanted:?}")))?;
            Ok(ValidArea {
                name,
                capacity: i64::from(a.capacity),
                category,
            })
        })
        .collect()
}

impl NewEvent {
    /// Checks every field; the first problem is the error.
    pub fn validate(self) -> Result<ValidEvent, AppError> {
        check_instant(self.starts_at_ms, "startsAt")?;
        check_window(self.sale.sales_start_at_ms, self.sale.sales_end_at_ms)?;
        check_limits(self.limits)?;
        check_extensions(self.sale.max_hold_extensions)?;
        let name = parse_label(&self.name, "name", EVENT_NAME_MAX_CHARS)?;
        let venue = parse_label(&self.venue, "venue", EVENT_NAME_MAX_CHARS)?;
        let categories = check_categories(self.categories)?;
        let areas = check_areas(self.areas, &categories)?;
        if self.sections.is_empty() && areas.is_empty() {
            return Err(AppError::BadInput(
                "an event needs at least one section or area".into(),
            ));
        }
        let mut seats = Vec::new();
        let mut section_names = HashSet::new();
        for section in self.sections {
            let section_name = parse_label(&section.name, "section name", SECTION_NAME_MAX_CHARS)?;
            if !section_names.insert(section_name.clone()) {
                return Err(AppError::BadInput(format!(
                    "section {section_name:?} appears twice"
                )));
            }
            if section.rows.is_empty() {
                return Err(AppError::BadInput(format!(
                    "section {section_name:?} needs at least one row"
                )));
            }
            let mut labels = HashSet::new();
            for row in section.rows {
                let label = parse_label(&row.label, "row label", ROW_LABEL_MAX_CHARS)?;
                if !labels.insert(label.clone()) {
                    return Err(AppError::BadInput(format!(
                        "row {label:?} appears twice in section {section_name:?}"
                    )));
                }
                if !(1..=MAX_SEATS_PER_ROW).contains(&row.seats) {
                    return Err(AppError::BadInput(format!(
                        "a row has 1 to {MAX_SEATS_PER_ROW} seats"
                    )));
                }
                if !(0..=MAX_PRICE_CENTS).contains(&row.price_cents) {
                    return Err(AppError::BadInput(format!(
                        "priceCents must be between 0 and {MAX_PRICE_CENTS}"
                    )));
                }
                let (category, price_cents) = row_price(&row, &categories)?;
                if let Some(n) = row
                    .accessible
                    .iter()
                    .find(|n| !(1..=row.seats).contains(*n))
                {
                    return Err(AppError::BadInput(format!(
                        "row {label:?} has no seat {n} to mark accessible"
                    )));
                }
                for number in 1..=row.seats {
                    seats.push(NewSeat {
                        section: section_name.clone(),
                        row: label.clone(),
                        number,
                        price_cents,
                        category,
                        accessible: row.accessible.contains(&number),
                    });
                }
                if seats.len() > MAX_SEATS_PER_EVENT {
                    return Err(AppError::BadInput(format!(
                        "an event has at most {MAX_SEATS_PER_EVENT} seats"
                    )));
                }
            }
        }
        Ok(ValidEvent {
            name,
            venue,
            starts_at_ms: self.starts_at_ms,
            seats,
            sale: self.sale,
            limits: self.limits,
            categories,
            areas,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, seats: i32, price_cents: i32) -> NewRow {
        NewRow {
            label: label.into(),
            seats,
            price_cents,
            category: None,
            accessible: Vec::new(),
        }
    }

    fn event(sections: Vec<NewSection>) -> NewEvent {
        NewEvent {
            name: " Gala ".into(),
            venue: "Hall".into(),
            starts_at_ms: 1_000,
            sections,
            sale: SaleSettings::default(),
            limits: BuyerLimits::default(),
            categories: Vec::new(),
            areas: Vec::new(),
        }
    }

    fn section(name: &str, rows: Vec<NewRow>) -> NewSection {
        NewSection {
            name: name.into(),
            rows,
        }
    }

    fn refused(input: NewEvent) -> String {
        match input.validate() {
            Err(AppError::BadInput(message)) => message,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn seats_are_laid_out_in_order_with_their_row_price() {
        let valid = event(vec![
            section("Stalls", vec![row("A", 2, 500), row("B", 1, 300)]),
            section("Circle", vec![row("A", 1, 0)]),
        ])
        .validate()
        .expect("valid");
        assert_eq!(valid.name, "Gala");
        let layout: Vec<(&str, &str, i32, i64)> = valid
            .seats
            .iter()
            .map(|s| (s.section.as_str(), s.row.as_str(), s.number, s.price_cents))
            .collect();
        assert_eq!(
            layout,
            vec![
                ("Stalls", "A", 1, 500),
                ("Stalls", "A", 2, 500),
                ("Stalls", "B", 1, 300),
                ("Circle", "A", 1, 0)
            ]
        );
    }

    #[test]
    fn names_must_be_unique_where_they_must() {
        assert!(
            refused(event(vec![
                section("S", vec![row("A", 1, 0)]),
                section("S", vec![row("A", 1, 0)])
            ]))
            .contains("twice")
        );
        assert!(
            refused(event(vec![section(
                "S",
                vec![row("A", 1, 0), row("A", 1, 0)]
            )]))
            .contains("twice")
        );
    }

    #[test]
    fn empty_plans_and_out_of_range_numbers_are_refused() {
        assert!(refused(event(vec![])).contains("at least one section"));
        assert!(refused(event(vec![section("S", vec![])])).contains("at least one row"));
        assert!(refused(event(vec![section("S", vec![row("A", 0, 0)])])).contains("seats"));
        assert!(
            refused(event(vec![section(
                "S",
                vec![row("A", MAX_SEATS_PER_ROW + 1, 0)]
            )]))
            .contains("seats")
        );
        assert!(refused(event(vec![section("S", vec![row("A", 1, -1)])])).contains("priceCents"));
        assert!(
            refused(event(vec![section(
                "S",
                vec![row("A", 1, MAX_PRICE_CENTS + 1)]
            )]))
            .contains("priceCents")
        );
        let mut late = event(vec![section("S", vec![row("A", 1, 0)])]);
        late.starts_at_ms = LATEST_INSTANT_MS + 1;
        assert!(refused(late).contains("startsAt"));
    }

    #[test]
    fn an_event_has_a_bounded_number_of_seats() {
        let rows_needed = MAX_SEATS_PER_EVENT / 1_000 + 1;
        let rows = (0..rows_needed)
            .map(|i| row(&format!("R{i}"), 1_000, 0))
            .collect();
        assert!(refused(event(vec![section("S", rows)])).contains("at most"));
    }

    #[test]
    fn a_sales_window_must_not_be_empty() {
        let mut input = event(vec![section("S", vec![row("A", 1, 0)])]);
        input.sale.sales_start_at_ms = Some(2_000);
        input.sale.sales_end_at_ms = Some(2_000);
        assert!(refused(input.clone()).contains("before salesEndAt"));
        input.sale.sales_end_at_ms = Some(2_001);
        assert!(input.validate().is_ok());
    }

    fn stored() -> event::Model {
        event::Model {
            id: 1,
            name: "Gala".into(),
            venue: "Hall".into(),
            starts_at_ms: 1_000,
            seq: 0,
            created_at_ms: 0,
            status: EventStatus::OnSale,
            sales_start_at_ms: Some(100),
            sales_end_at_ms: Some(200),
            max_seats_per_order: None,
            max_seats_per_buyer: Some(4),
            max_hold_extensions: 1,
        }
    }

    #[test]
    fn an_update_changes_what_it_names_and_null_clears_a_window_end() {
        let change = EventUpdate {
            name: Some(" Ball ".into()),
            sales_end_at_ms: Some(None),
            ..EventUpdate::default()
        };
        let next = change.apply(stored()).expect("valid");
        assert_eq!(next.name, "Ball");
        assert_eq!(next.venue, "Hall");
        assert_eq!(next.sales_start_at_ms, Some(100));
        assert_eq!(next.sales_end_at_ms, None);
    }

    #[test]
    fn an_update_keeps_the_window_well_ordered() {
        let change = EventUpdate {
            sales_start_at_ms: Some(Some(300)),
            ..EventUpdate::default()
        };
        match change.apply(stored()) {
            Err(AppError::BadInput(message)) => assert!(message.contains("before salesEndAt")),
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn limits_are_set_cleared_and_at_least_one() {
        let change = EventUpdate {
            max_seats_per_order: Some(Some(2)),
            max_seats_per_buyer: Some(None),
            ..EventUpdate::default()
        };
        let next = change.apply(stored()).expect("valid");
        assert_eq!(next.max_seats_per_order, Some(2));
        assert_eq!(next.max_seats_per_buyer, None);
        let zero = EventUpdate {
            max_seats_per_buyer: Some(Some(0)),
            ..EventUpdate::default()
        };
        assert!(matches!(zero.apply(stored()), Err(AppError::BadInput(_))));
    }

    fn category(name: &str, price_cents: i32) -> NewCategory {
        NewCategory {
            name: name.into(),
            price_cents,
            color: Some("#c00".into()),
        }
    }

    #[test]
    fn a_row_of_a_category_takes_its_price_and_marks_accessible_seats() {
        let mut input = event(vec![section(
            "S",
            vec![
                NewRow {
                    category: Some("Gold".into()),
                    accessible: vec![2],
                    ..row("A", 2, 0)
                },
                row("B", 1, 300),
            ],
        )]);
        input.categories = vec![category("Gold", 900)];
        let valid = input.validate().expect("valid");
        let seats: Vec<(i64, Option<usize>, bool)> = valid
            .seats
            .iter()
            .map(|s| (s.price_cents, s.category, s.accessible))
            .collect();
        assert_eq!(
            seats,
            vec![
                (900, Some(0), false),
                (900, Some(0), true),
                (300, None, false)
            ]
        );
    }

    #[test]
    fn categories_must_be_named_once_and_priced_consistently() {
        let mut input = event(vec![section(
            "S",
            vec![NewRow {
                category: Some("Gold".into()),
                ..row("A", 1, 500)
            }],
        )]);
        input.categories = vec![category("Gold", 900)];
        assert!(refused(input.clone()).contains("priceCents 0 or 900"));
        input.categories = vec![category("Silver", 900)];
        assert!(refused(input.clone()).contains("no category"));
        input.categories = vec![category("Gold", 500), category("Gold", 500)];
        assert!(refused(input.clone()).contains("twice"));
        let mut accessible = event(vec![section(
            "S",
            vec![NewRow {
                accessible: vec![3],
                ..row("A", 2, 0)
            }],
        )]);
        accessible.categories = Vec::new();
        assert!(refused(accessible).contains("no seat 3"));
    }
}
