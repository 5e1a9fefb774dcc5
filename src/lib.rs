//! onsale: a GraphQL server for the moment tickets go on sale.

pub mod auth;
pub mod booking;
pub mod cli;
pub mod config;
pub mod error;
pub mod graphql;
pub mod http;
pub mod payment;
pub mod realtime;
pub mod startup;
pub mod telemetry;
pub mod waiting_room;
