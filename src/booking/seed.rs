//! The demo event seeded into an empty database, so a newcomer has seats to book at once.

use super::BookingService;
use super::event_input::{NewEvent, NewRow, NewSection, SaleSettings};
use crate::domain::clock::now_ms;
use crate::domain::sale::BuyerLimits;
use crate::error::AppError;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn rows(labels: &str, seats: i32, price_cents: i32) -> Vec<NewRow> {
    labels
        .chars()
        .map(|label| NewRow {
            label: label.to_string(),
            seats,
            price_cents,
            category: None,
            accessible: Vec::new(),
        })
        .collect()
}

/// The demo: 400 seats in three sections with three price levels.
pub fn demo_event() -> NewEvent {
    NewEvent {
        name: "onsale Demo Night".into(),
        venue: "The Demo Hall".into(),
        starts_at_ms: now_ms() + 30 * DAY_MS,
        sections: vec![
            NewSection {
                name: "Orchestra".into(),
                rows: rows("ABCDEFGHIJ", 20, 12_000),
            },
            NewSection {
                name: "Mezzanine".into(),
                rows: rows("ABCDEF", 20, 8_000),
            },
            NewSection {
                name: "Balcony".into(),
                rows: rows("ABCDE", 16, 4_500),
            },
        ],
        sale: SaleSettings::default(),
        limits: BuyerLimits::default(),
        categories: Vec::new(),
        areas: Vec::new(),
    }
}

impl BookingService {
    /// Seeds the demo event when the database has no events. Returns whether it did.
    pub async fn seed_demo_if_empty(&self) -> Result<bool, AppError> {
        if self.has_events(&self.db.conn).await? {
            return Ok(false);
        }
        let event = self.create_event(demo_event()).await?;
        tracing::info!(
            event.id = event.id,
            seats = event.seat_count,
            "seeded the demo event"
        );
        Ok(true)
    }
}
