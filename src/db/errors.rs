//! What a database error means to the service, decided once: transient (retry), a seat that
//! the database's own unique indexes say is taken, a value the client sent that cannot be
//! stored, or a bug.

use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr};

use crate::domain::limits::DB_BUSY_RETRY_AFTER_MS;
use crate::error::AppError;

/// How the database failed, as far as the service cares.
#[derive(Debug, PartialEq, Eq)]
pub enum DbFailure {
    /// Serialization failure, deadlock, lock or statement timeout, lost connection, busy
    /// SQLite: the same operation may succeed if tried again.
    Transient,
    /// A unique index on active seat claims refused the write: the seat is taken.
    SeatTaken,
    /// The database cannot store a value the client sent (e.g. NUL in text).
    BadValue,
    Other,
}

/// The partial unique indexes that allow one active claim per seat.
const SEAT_CLAIM_INDEXES: [&str; 2] = ["uq_hold_seats_active_seat", "uq_booking_seats_active_seat"];
/// How SQLite names the same indexes in its messages.
const SQLITE_SEAT_CLAIMS: [&str; 2] = [
    "UNIQUE constraint failed: hold_seats.seat_id",
    "UNIQUE constraint failed: booking_seats.seat_id",
];

/// The check that an area never has more places held, booked and blocked than its capacity
/// (both backends name it in their messages).
const AREA_COUNTS_CHECK: &str = "ck_areas_counts";

/// Classifies a database error once, for the whole service.
pub fn classify(err: &DbErr) -> DbFailure {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => DbFailure::Transient,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            classify_sqlx(e)
        }
        _ => DbFailure::Other,
    }
}

fn classify_sqlx(err: &sqlx::Error) -> DbFailure {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => DbFailure::Transient,
        sqlx::Error::Database(db) => classify_database(
            db.code().as_deref().unwrap_or_default(),
            db.constraint().unwrap_or_default(),
            db.message(),
        ),
        _ => DbFailure::Other,
    }
}

/// An error the database server reported: its SQLSTATE (PostgreSQL) or result code (SQLite),
/// the constraint it names and its message.
pub fn classify_database(code: &str, constraint: &str, message: &str) -> DbFailure {
    if SEAT_CLAIM_INDEXES
        .iter()
        .any(|name| constraint == *name || message.contains(name))
        || SQLITE_SEAT_CLAIMS.iter().any(|m| message.contains(m))
        || constraint == AREA_COUNTS_CHECK
        || message.contains(AREA_COUNTS_CHECK)
    {
        return DbFailure::SeatTaken;
    }
    match code {
        // PostgreSQL: serialization, deadlock, lock timeout, statement timeout,
        // shutdown / crash / not yet accepting connections, connection exceptions,
        // too many connections.
        "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "53300" | "08000"
        | "08003" | "08006" | "08001" | "08004" => DbFailure::Transient,
        // PostgreSQL: a character it cannot store, a bad value for a type.
        "22021" | "22P05" | "22003" | "22007" | "22008" => DbFailure::BadValue,
        // SQLite: BUSY, LOCKED and their extended codes.
        "5" | "6" | "261" | "517" | "262" => DbFailure::Transient,
        _ => DbFailure::Other,
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        match classify(&err) {
            DbFailure::Transient => {
                tracing::debug!(error = %err, "transient database failure");
                Self::retry_later(
                    DB_BUSY_RETRY_AFTER_MS,
                    "the database is busy; try again shortly",
                )
            }
            DbFailure::SeatTaken => Self::seat_unavailable(Vec::new()),
            DbFailure::BadValue => Self::BadInput(
                "a value could not be stored (check for control characters or out-of-range numbers)"
                    .into(),
            ),
            DbFailure::Other => Self::Internal(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seat_claim_indexes_mean_the_seat_is_taken() {
        for (code, constraint, message) in [
            ("23505", "uq_hold_seats_active_seat", "duplicate key value"),
            (
                "23505",
                "",
                "violates unique constraint \"uq_booking_seats_active_seat\"",
            ),
            ("2067", "", "UNIQUE constraint failed: hold_seats.seat_id"),
            (
                "23514",
                "ck_areas_counts",
                "new row violates check constraint",
            ),
            ("275", "", "CHECK constraint failed: ck_areas_counts"),
            (
                "2067",
                "",
                "UNIQUE constraint failed: booking_seats.seat_id",
            ),
        ] {
            assert_eq!(
                classify_database(code, constraint, message),
                DbFailure::SeatTaken
            );
        }
    }

    #[test]
    fn other_unique_violations_are_not_seat_conflicts() {
        assert_eq!(
            classify_database("23505", "idempotency_keys_pkey", "duplicate key value"),
            DbFailure::Other
        );
    }

    #[test]
    fn lock_waits_deadlocks_and_lost_servers_are_transient() {
        for code in [
            "40001", "40P01", "55P03", "57014", "57P01", "53300", "08006", "5", "517",
        ] {
            assert_eq!(
                classify_database(code, "", ""),
                DbFailure::Transient,
                "{code}"
            );
        }
    }

    #[test]
    fn unstorable_values_are_the_clients_to_fix() {
        for code in ["22021", "22P05", "22003"] {
            assert_eq!(
                classify_database(code, "", ""),
                DbFailure::BadValue,
                "{code}"
            );
        }
    }

    #[test]
    fn connection_errors_are_transient() {
        assert_eq!(
            classify(&DbErr::Conn(RuntimeErr::Internal("gone".into()))),
            DbFailure::Transient
        );
        assert_eq!(
            classify(&DbErr::RecordNotFound("x".into())),
            DbFailure::Other
        );
    }
}
