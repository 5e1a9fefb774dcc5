//! Database migrations for onsale. Applied migrations are never edited: add a new file instead.

pub use sea_orm_migration::prelude::*;

mod columns;
mod m20261121_000001_create_core;
mod m20261121_000002_seat_change_retention;
mod m20261121_000003_waiting_room;
mod m20261121_000004_checkouts;
mod m20261121_000005_deployment;
mod m20261202_000006_event_lifecycle;
mod m20261202_000007_event_limits;
mod m20261202_000008_hold_extensions;
mod m20261202_000009_categories;
mod m20261202_000010_blocked_seats;
mod m20261202_000011_tickets;
mod m20261202_000012_webhooks;
mod m20261202_000013_areas;
mod m20261202_000014_seat_change_pending;
mod m20261203_000015_fencing;
mod m20261204_000016_hold_buyer_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_create_core::Migration),
            Box::new(m20261121_000002_seat_change_retention::Migration),
            Box::new(m20261121_000003_waiting_room::Migration),
            Box::new(m20261121_000004_checkouts::Migration),
            Box::new(m20261121_000005_deployment::Migration),
            Box::new(m20261202_000006_event_lifecycle::Migration),
            Box::new(m20261202_000007_event_limits::Migration),
            Box::new(m20261202_000008_hold_extensions::Migration),
            Box::new(m20261202_000009_categories::Migration),
            Box::new(m20261202_000010_blocked_seats::Migration),
            Box::new(m20261202_000011_tickets::Migration),
            Box::new(m20261202_000012_webhooks::Migration),
            Box::new(m20261202_000013_areas::Migration),
            Box::new(m20261202_000014_seat_change_pending::Migration),
            Box::new(m20261203_000015_fencing::Migration),
            Box::new(m20261204_000016_hold_buyer_index::Migration),
        ]
    }
}
