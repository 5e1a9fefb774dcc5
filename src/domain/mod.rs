//! The domain: what the services work with, apart from both the tables and the GraphQL
//! schema — statuses, validated inputs and their limits, the views the services return, seat
//! changes and the clock. Everything here is plain data and pure functions.

pub mod area;
pub mod clock;
#[cfg(test)]
pub mod fixtures;
pub mod input;
pub mod limits;
pub mod sale;
pub mod seat_change;
pub mod status;
pub mod ticket;
pub mod views;
