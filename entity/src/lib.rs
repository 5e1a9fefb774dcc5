//! SeaORM entities: one module per table. These are storage types only; the GraphQL API has
//! its own types in `onsale::graphql`, so changing a column never silently changes the schema.

pub mod area;
pub mod booking;
pub mod booking_area;
pub mod booking_seat;
pub mod category;
pub mod checkout;
pub mod deployment;
pub mod event;
pub mod hold;
pub mod hold_area;
pub mod hold_seat;
pub mod idempotency_key;
pub mod seat;
pub mod seat_change;
pub mod seat_change_pending;
pub mod status;
pub mod stripe_event;
pub mod ticket;
pub mod waiting_room;
pub mod webhook_delivery;
pub mod webhook_endpoint;
pub mod webhook_event;
