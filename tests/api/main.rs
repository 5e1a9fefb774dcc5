//! Black-box tests: the real app over real HTTP and WebSocket, against real PostgreSQL and
//! Redis (started by `scripts/test.sh`) and SQLite. One binary, so it compiles once.

mod helpers;

mod ambiguous_commit;
mod auth;
mod auth_jwks;
mod backoffice_connections;
mod backoffice_export;
mod backoffice_report;
mod bad_input;
mod concurrency;
mod database;
mod expiry;
mod faults;
mod flows;
mod fuzz;
mod graphiql;
mod group_commit;
mod hardening;
mod hostile;
mod hostile_connections;
mod hostile_limits;
mod idempotency;
mod inventory_areas;
mod inventory_blocking;
mod inventory_categories;
mod inventory_extend;
mod inventory_lifecycle;
mod inventory_limits;
mod inventory_upgrade;
mod live;
mod payments;
mod pg_proxy;
mod process;
mod procs;
mod read_cache;
mod schema;
mod seat_map;
mod slow_consumer;
mod sql_mirror;
mod stripe_client;
mod surge;
mod tickets;
mod waiting_room;
mod webhooks;
mod ws;
