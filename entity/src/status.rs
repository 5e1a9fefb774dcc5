//! Statuses as stored: each is a string column read and written through one of these enums,
//! so a value nobody knows is an error when a row is loaded, never a silent default.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// What a seat row stores. A `Held` seat whose hold has run out counts as available to
/// readers and to the next buyer, before any sweep records it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatus {
    #[sea_orm(string_value = "AVAILABLE")]
    Available,
    #[sea_orm(string_value = "HELD")]
    Held,
    #[sea_orm(string_value = "BOOKED")]
    Booked,
    /// Taken off sale by the organizer: in seat changes and views; a seat row keeps it in its
    /// `blocked` flag instead.
    #[sea_orm(string_value = "BLOCKED")]
    Blocked,
}

/// What a hold row stores. An `Active` hold past its expiry is expired before the sweeper
/// records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum HoldStatus {
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    #[sea_orm(string_value = "CONFIRMED")]
    Confirmed,
    #[sea_orm(string_value = "RELEASED")]
    Released,
    #[sea_orm(string_value = "EXPIRED")]
    Expired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum BookingStatus {
    #[sea_orm(string_value = "CONFIRMED")]
    Confirmed,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
    #[sea_orm(string_value = "REFUNDED")]
    Refunded,
}

/// Where a checkout is in its payment saga.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum CheckoutState {
    /// Waiting for the card.
    #[sea_orm(string_value = "PENDING")]
    Pending,
    /// Booked; the authorised payment is still to be captured.
    #[sea_orm(string_value = "BOOKED")]
    Booked,
    #[sea_orm(string_value = "CAPTURED")]
    Captured,
    /// The hold could not be honoured; the authorisation is still to be cancelled.
    #[sea_orm(string_value = "CANCELLING")]
    Cancelling,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
    /// Money was captured but the seats are not (or no longer) the buyer's; refund to make.
    #[sea_orm(string_value = "REFUNDING")]
    Refunding,
    #[sea_orm(string_value = "REFUNDED")]
    Refunded,
    /// The payment failed; the hold was released.
    #[sea_orm(string_value = "FAILED")]
    Failed,
}

/// Where an event is in its life: only an `OnSale` event (inside its sales window) takes new
/// holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum EventStatus {
    /// Being prepared: invisible to customers.
    #[sea_orm(string_value = "DRAFT")]
    Draft,
    #[sea_orm(string_value = "ON_SALE")]
    OnSale,
    #[sea_orm(string_value = "PAUSED")]
    Paused,
    #[sea_orm(string_value = "CLOSED")]
    Closed,
    /// Final: every hold released, every booking cancelled or refunded.
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
}

/// Where one webhook delivery is: `Pending` until a 2xx (`Delivered`) or until retries run
/// out (`Failed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum WebhookDeliveryStatus {
    #[sea_orm(string_value = "PENDING")]
    Pending,
    #[sea_orm(string_value = "DELIVERED")]
    Delivered,
    #[sea_orm(string_value = "FAILED")]
    Failed,
}
