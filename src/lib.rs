//! onsale: a GraphQL server for the moment tickets go on sale.

pub mod auth;
pub mod backoffice;
pub mod booking;
pub mod checkout;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod payment;
pub mod realtime;
pub mod redis_client;
pub mod startup;
pub mod tasks;
pub mod telemetry;
pub mod waiting_room;
pub mod webhooks;
