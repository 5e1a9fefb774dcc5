//! Invariants checked through the API after a run: no seat in two active holds or two
//! confirmed bookings, and the seat map agrees with the holds and bookings the bench was
//! told it made.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};

use crate::ops::{self, BookingInfo, HoldInfo};
use crate::report::Report;
use crate::scenarios::{Ctx, User, examples};

/// How many users' holds and bookings are read at once.
const LOAD_CONCURRENCY: usize = 16;

/// What the bench believes from the answers it got.
#[derive(Debug, Default)]
pub struct Tracked {
    /// Every hold the server answered `OK` for (whatever happened to it later).
    pub ok_holds: HashSet<String>,
    /// Holds still active as far as the bench knows, with their seats.
    pub active: HashMap<String, Vec<String>>,
    /// Holds confirmed into a booking, with their seats.
    pub confirmed: HashMap<String, Vec<String>>,
    /// Some request's outcome is unknown (a transport failure), so the bench's view may
    /// legitimately differ from the server's: skip the exact comparison.
    pub uncertain: bool,
}

impl Tracked {
    pub fn merge(&mut self, other: Tracked) {
        self.ok_holds.extend(other.ok_holds);
        self.active.extend(other.active);
        self.confirmed.extend(other.confirmed);
        self.uncertain |= other.uncertain;
    }
}

/// Reads the seat map and every user's active holds (and bookings, if `with_bookings`) and
/// adds the invariant checks to `report`.
pub async fn check_event(
    ctx: &Ctx,
    report: &mut Report,
    event_id: &str,
    users: &[User],
    tracked: &Tracked,
    with_bookings: bool,
) -> anyhow::Result<()> {
    let map = ops::seat_statuses(&ctx.api, event_id).await?;
    let holds: Vec<HoldInfo> = futures::stream::iter(users)
        .map(|u| ops::active_holds(&ctx.api, &u.token, event_id))
        .buffer_unordered(LOAD_CONCURRENCY)
        .try_concat()
        .await
        .context("cannot read the users' active holds")?;
    let bookings: Vec<BookingInfo> = if with_bookings {
        futures::stream::iter(users)
            .map(|u| ops::bookings(&ctx.api, &u.token, event_id))
            .buffer_unordered(LOAD_CONCURRENCY)
            .try_concat()
            .await
            .context("cannot read the users' bookings")?
    } else {
        Vec::new()
    };

    // Holds: the server's word.
    let holders = claims(holds.iter().map(|h| (&h.id, &h.seats)));
    let doubly_held: Vec<String> = holders
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(seat, ids)| format!("seat {seat} in holds {}", ids.join(" & ")))
        .collect();
    report.check(
        "no seat in two ACTIVE holds (myHolds)",
        doubly_held.is_empty(),
        if doubly_held.is_empty() {
            format!("{} active holds, {} seats", holds.len(), holders.len())
        } else {
            examples(&doubly_held, 5)
        },
    );
    let bad_held: Vec<String> = map
        .with_status("HELD")
        .filter_map(|seat| match holders.get(seat).map(Vec::as_slice) {
            Some([one]) if tracked.ok_holds.contains(one) => None,
            Some([one]) => Some(format!("seat {seat}: hold {one} was never answered OK")),
            Some(many) => Some(format!("seat {seat}: {} active holds", many.len())),
            None => Some(format!("seat {seat}: no active hold")),
        })
        .collect();
    let held = map.with_status("HELD").count();
    report.check(
        "every HELD seat belongs to exactly one successful hold",
        bad_held.is_empty(),
        if bad_held.is_empty() {
            format!("{held} HELD seats")
        } else {
            examples(&bad_held, 5)
        },
    );
    let not_shown: Vec<String> = holders
        .keys()
        .filter(|seat| map.status.get(*seat).map(String::as_str) != Some("HELD"))
        .map(|seat| {
            format!(
                "seat {seat} shows {}",
                map.status.get(seat).map_or("nothing", String::as_str)
            )
        })
        .collect();
    report.check(
        "every seat of an active hold shows HELD on the seat map",
        not_shown.is_empty(),
        examples(&not_shown, 5),
    );

    if with_bookings {
        let confirmed: Vec<&BookingInfo> = bookings
            .iter()
            .filter(|b| b.status == "CONFIRMED")
            .collect();
        let owners = claims(confirmed.iter().map(|b| (&b.id, &b.seats)));
        let double_booked: Vec<String> = owners
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(seat, ids)| format!("seat {seat} in bookings {}", ids.join(" & ")))
            .collect();
        report.check(
            "no seat in two CONFIRMED bookings (myBookings)",
            double_booked.is_empty(),
            if double_booked.is_empty() {
                format!("{} bookings, {} seats", confirmed.len(), owners.len())
            } else {
                examples(&double_booked, 5)
            },
        );
        let bad_booked: Vec<String> = map
            .with_status("BOOKED")
            .filter(|seat| owners.get(*seat).map_or(0, Vec::len) != 1)
            .map(|seat| format!("seat {seat}"))
            .chain(
                owners
                    .keys()
                    .filter(|seat| map.status.get(*seat).map(String::as_str) != Some("BOOKED"))
                    .map(|seat| format!("seat {seat} booked but not BOOKED on the map")),
            )
            .collect();
        report.check(
            "BOOKED seats on the map are exactly the confirmed bookings' seats",
            bad_booked.is_empty(),
            if bad_booked.is_empty() {
                format!("{} BOOKED seats", map.with_status("BOOKED").count())
            } else {
                examples(&bad_booked, 5)
            },
        );
        if !tracked.uncertain {
            let server: HashSet<&String> = confirmed.iter().map(|b| &b.hold_id).collect();
            let ours: HashSet<&String> = tracked.confirmed.keys().collect();
            report.check(
                "the server's bookings are the confirms the bench got OK",
                server == ours,
                format!("server {}, bench {}", server.len(), ours.len()),
            );
        }
    }

    if !tracked.uncertain {
        let server: HashSet<&String> = holds.iter().map(|h| &h.id).collect();
        let ours: HashSet<&String> = tracked.active.keys().collect();
        let missing = ours.difference(&server).count();
        let extra = server.difference(&ours).count();
        report.check(
            "the server's active holds are the ones the bench holds",
            missing == 0 && extra == 0,
            format!(
                "server {}, bench {}, missing on server {missing}, unknown to bench {extra}",
                server.len(),
                ours.len()
            ),
        );
    }
    Ok(())
}

/// Seat id → ids of the holds (or bookings) that claim it.
fn claims<'a>(
    items: impl Iterator<Item = (&'a String, &'a Vec<String>)>,
) -> BTreeMap<String, Vec<String>> {
    let mut by_seat: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, seats) in items {
        for seat in seats {
            by_seat.entry(seat.clone()).or_default().push(id.clone());
        }
    }
    by_seat
}
