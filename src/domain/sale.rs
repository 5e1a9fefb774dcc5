//! Sale rules of an event: which status changes are allowed, and whether the event takes new
//! holds at a moment (on sale and inside its sales window).

use super::status::EventStatus;

/// Whether an admin may move an event from `from` to `to`. Setting the current status is
/// allowed (and changes nothing); CANCELLED is final.
pub fn status_change_allowed(from: EventStatus, to: EventStatus) -> bool {
    use EventStatus::{Cancelled, Closed, Draft, OnSale, Paused};
    from == to
        || matches!(
            (from, to),
            (Draft, OnSale)
                | (OnSale, Paused)
                | (Paused, OnSale)
                | (OnSale | Paused, Closed)
                | (Closed, OnSale)
                | (Draft | OnSale | Paused | Closed, Cancelled)
        )
}

/// Why an event takes no new holds right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotOnSale {
    /// Its status is not ON_SALE.
    Status(EventStatus),
    /// On sale, but its window opens at this instant.
    NotYet { sales_start_at_ms: i64 },
    /// On sale, but its window has closed.
    Over,
}

/// The sale settings of one event as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaleWindow {
    pub status: EventStatus,
    /// Inclusive.
    pub sales_start_at_ms: Option<i64>,
    /// Exclusive.
    pub sales_end_at_ms: Option<i64>,
}

impl SaleWindow {
    pub fn of(event: &entity::event::Model) -> Self {
        Self {
            status: event.status,
            sales_start_at_ms: event.sales_start_at_ms,
            sales_end_at_ms: event.sales_end_at_ms,
        }
    }

    /// Whether new holds may be taken at `now`, and if not, why.
    pub fn check(&self, now: i64) -> Result<(), NotOnSale> {
        match self.sales_start_at_ms {
            // The opening is worth telling whatever the status: a client can wait for it.
            Some(start) if now < start => Err(NotOnSale::NotYet {
                sales_start_at_ms: start,
            }),
            _ if self.status != EventStatus::OnSale => Err(NotOnSale::Status(self.status)),
            _ if self.sales_end_at_ms.is_some_and(|end| now >= end) => Err(NotOnSale::Over),
            _ => Ok(()),
        }
    }

    pub fn on_sale_at(&self, now: i64) -> bool {
        self.check(now).is_ok()
    }
}

/// Which per-event limit a hold would break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// Seats and places in one hold.
    Order,
    /// Seats and places across one buyer's active holds and confirmed bookings.
    Buyer,
    /// Extensions of one hold.
    Extensions,
}

impl LimitKind {
    /// The contract's `extensions.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "ORDER",
            Self::Buyer => "BUYER",
            Self::Extensions => "EXTENSIONS",
        }
    }
}

/// A limit a request would go over: which, and its configured value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverLimit {
    pub kind: LimitKind,
    pub limit: i64,
}

/// The per-event limits on what one buyer takes (`None`: no limit beyond the server's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuyerLimits {
    pub per_order: Option<i32>,
    pub per_buyer: Option<i32>,
}

impl BuyerLimits {
    pub fn of(event: &entity::event::Model) -> Self {
        Self {
            per_order: event.max_seats_per_order,
            per_buyer: event.max_seats_per_buyer,
        }
    }

    /// Whether a hold of `in_order` seats and places fits the per-order limit.
    pub fn check_order(&self, in_order: usize) -> Result<(), OverLimit> {
        match self.per_order {
            Some(limit) if in_order > usize::try_from(limit).unwrap_or(0) => Err(OverLimit {
                kind: LimitKind::Order,
                limit: i64::from(limit),
            }),
            _ => Ok(()),
        }
    }

    /// Whether the buyer's total, counting the new hold, fits the per-buyer limit.
    pub fn check_buyer(&self, total: i64) -> Result<(), OverLimit> {
        match self.per_buyer {
            Some(limit) if total > i64::from(limit) => Err(OverLimit {
                kind: LimitKind::Buyer,
                limit: i64::from(limit),
            }),
            _ => Ok(()),
        }
    }
}

/// Where one hold stands for `extendHold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extension {
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub used: i32,
    /// The event's `maxHoldExtensions`.
    pub allowed: i32,
}

impl Extension {
    /// The new expiry: `min(expires + ttl, created + lifetime)`. `LIMIT_EXCEEDED` when no
    /// extension is left or the new expiry would gain nothing.
    pub fn next_expiry(&self, ttl_ms: i64, lifetime_ms: i64) -> Result<i64, OverLimit> {
        let over = OverLimit {
            kind: LimitKind::Extensions,
            limit: i64::from(self.allowed),
        };
        if self.used >= self.allowed {
            return Err(over);
        }
        let next = self
            .expires_at_ms
            .saturating_add(ttl_ms)
            .min(self.created_at_ms.saturating_add(lifetime_ms));
        if next > self.expires_at_ms {
            Ok(next)
        } else {
            Err(over)
        }
    }

    /// Extensions still possible (never negative).
    pub fn left(&self) -> i32 {
        (self.allowed - self.used).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventStatus::{Cancelled, Closed, Draft, OnSale, Paused};

    #[test]
    fn an_extension_adds_the_ttl_up_to_the_lifetime_and_is_counted() {
        let hold = Extension {
            expires_at_ms: 600,
            created_at_ms: 0,
            used: 0,
            allowed: 2,
        };
        assert_eq!(hold.next_expiry(600, 7_200), Ok(1_200));
        assert_eq!(hold.left(), 2);
        // Capped at creation + lifetime.
        assert_eq!(hold.next_expiry(600, 1_000), Ok(1_000));
        // Nothing to gain once the cap is reached.
        let capped = Extension {
            expires_at_ms: 1_000,
            ..hold
        };
        let over = Err(OverLimit {
            kind: LimitKind::Extensions,
            limit: 2,
        });
        assert_eq!(capped.next_expiry(600, 1_000), over);
        // None left.
        let spent = Extension { used: 2, ..hold };
        assert_eq!(spent.next_expiry(600, 7_200), over);
        assert_eq!(spent.left(), 0);
        assert_eq!(Extension { used: 5, ..hold }.left(), 0);
    }

    #[test]
    fn limits_allow_up_to_their_value() {
        let limits = BuyerLimits {
            per_order: Some(2),
            per_buyer: Some(3),
        };
        assert_eq!(limits.check_order(2), Ok(()));
        assert_eq!(
            limits.check_order(3),
            Err(OverLimit {
                kind: LimitKind::Order,
                limit: 2
            })
        );
        assert_eq!(limits.check_buyer(3), Ok(()));
        assert_eq!(
            limits.check_buyer(4),
            Err(OverLimit {
                kind: LimitKind::Buyer,
                limit: 3
            })
        );
        let none = BuyerLimits::default();
        assert_eq!(none.check_order(usize::MAX), Ok(()));
        assert_eq!(none.check_buyer(i64::MAX), Ok(()));
    }

    const ALL: [EventStatus; 5] = [Draft, OnSale, Paused, Closed, Cancelled];

    #[test]
    fn the_contracts_table_of_status_changes() {
        let allowed = [
            (Draft, OnSale),
            (Draft, Cancelled),
            (OnSale, Paused),
            (Paused, OnSale),
            (OnSale, Closed),
            (Paused, Closed),
            (Closed, OnSale),
            (OnSale, Cancelled),
            (Paused, Cancelled),
            (Closed, Cancelled),
        ];
        for from in ALL {
            for to in ALL {
                let expected = from == to || allowed.contains(&(from, to));
                assert_eq!(
                    status_change_allowed(from, to),
                    expected,
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    fn window(status: EventStatus, start: Option<i64>, end: Option<i64>) -> SaleWindow {
        SaleWindow {
            status,
            sales_start_at_ms: start,
            sales_end_at_ms: end,
        }
    }

    #[test]
    fn the_window_includes_its_start_and_excludes_its_end() {
        let w = window(OnSale, Some(100), Some(200));
        assert_eq!(
            w.check(99),
            Err(NotOnSale::NotYet {
                sales_start_at_ms: 100
            })
        );
        assert_eq!(w.check(100), Ok(()));
        assert_eq!(w.check(199), Ok(()));
        assert_eq!(w.check(200), Err(NotOnSale::Over));
        assert_eq!(window(OnSale, None, None).check(0), Ok(()));
    }

    #[test]
    fn only_on_sale_events_take_holds() {
        for status in [Draft, Paused, Closed, Cancelled] {
            assert_eq!(
                window(status, None, None).check(0),
                Err(NotOnSale::Status(status))
            );
        }
        assert_eq!(
            window(Paused, Some(10), None).check(0),
            Err(NotOnSale::NotYet {
                sales_start_at_ms: 10
            }),
            "the opening is told before it"
        );
    }
}
