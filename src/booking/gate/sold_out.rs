//! Areas known to have no place left, so that a surge on a sold-out area is answered without
//! a database round trip. Learnt from the area-change stream (every instance's changes) and
//! from the database's own refusals; forgotten as soon as a change shows a free place, and
//! trusted for [`SOLD_OUT_TTL_MS`] at most, because places of holds that run out come back
//! without a change being published until the sweeper runs.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// How long "sold out" is trusted after it was last seen. Short: an expired hold's places are
/// free at once in the database, and the gate must not hide them for long.
pub const SOLD_OUT_TTL_MS: i64 = 250;

#[derive(Clone, Copy, Debug)]
struct Seen {
    version: i64,
    at_ms: i64,
}

#[derive(Default)]
pub(super) struct SoldOut {
    areas: Mutex<HashMap<i64, Seen>>,
}

impl SoldOut {
    /// An area's counts at `version`: remembered if nothing is available, forgotten if
    /// something is. An older version than one already seen changes nothing.
    pub fn learn(&self, area_id: i64, version: i64, available: i64, now: i64) {
        let mut areas = self.areas.lock().unwrap_or_else(PoisonError::into_inner);
        if areas.get(&area_id).is_some_and(|s| s.version > version) {
            return;
        }
        if available > 0 {
            areas.remove(&area_id);
        } else {
            if areas.len() > 100_000 {
                areas.clear();
            }
            areas.insert(
                area_id,
                Seen {
                    version,
                    at_ms: now,
                },
            );
        }
    }

    /// Which of these areas are known sold out at `now`.
    pub fn refused(&self, area_ids: impl IntoIterator<Item = i64>, now: i64) -> Vec<i64> {
        let areas = self.areas.lock().unwrap_or_else(PoisonError::into_inner);
        area_ids
            .into_iter()
            .filter(|id| {
                areas
                    .get(id)
                    .is_some_and(|s| now - s.at_ms < SOLD_OUT_TTL_MS)
            })
            .collect()
    }

    pub fn clear(&self) {
        self.areas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sold_out_is_trusted_briefly_and_forgotten_when_a_place_frees() {
        let gate = SoldOut::default();
        gate.learn(1, 5, 0, 1_000);
        assert_eq!(gate.refused([1, 2], 1_000), vec![1]);
        assert_eq!(
            gate.refused([1], 1_000 + SOLD_OUT_TTL_MS),
            Vec::<i64>::new()
        );
        gate.learn(1, 6, 0, 2_000);
        gate.learn(1, 7, 1, 2_001);
        assert!(gate.refused([1], 2_001).is_empty());
    }

    #[test]
    fn an_older_version_changes_nothing() {
        let gate = SoldOut::default();
        gate.learn(1, 9, 0, 1_000);
        gate.learn(1, 8, 3, 1_001);
        assert_eq!(gate.refused([1], 1_001), vec![1]);
        gate.learn(2, 4, 2, 1_000);
        gate.learn(2, 3, 0, 1_001);
        assert_eq!(gate.refused([2], 1_001), vec![2], "nothing newer was known");
        gate.clear();
        assert!(gate.refused([1, 2], 1_001).is_empty());
    }
}
