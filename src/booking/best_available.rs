//! Choosing seats for `holdBestAvailable`: runs of consecutive seats in one row, best first.

use std::collections::HashMap;

use entity::seat;

/// Runs of `count` consecutive seat numbers in one row among `candidates`, best first
/// (higher price, then earlier in the layout); each run's ids ascending (the lock order).
pub(crate) fn adjacent_blocks(candidates: &[seat::Model], count: usize) -> Vec<Vec<i64>> {
    if count == 0 {
        return Vec::new();
    }
    let mut by_row: HashMap<(&str, &str), Vec<&seat::Model>> = HashMap::new();
    for s in candidates {
        by_row
            .entry((&s.section, &s.row_label))
            .or_default()
            .push(s);
    }
    let mut blocks: Vec<(i64, i32, Vec<i64>)> = Vec::new();
    for seats in by_row.values_mut() {
        seats.sort_by_key(|s| s.number);
        for window in seats.windows(count) {
            let consecutive = window
                .windows(2)
                .all(|pair| pair[1].number == pair[0].number + 1);
            if consecutive {
                let price: i64 = window.iter().map(|s| s.price_cents).min().unwrap_or(0);
                let position = window[0].position;
                blocks.push((price, position, window.iter().map(|s| s.id).collect()));
            }
        }
    }
    blocks.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    blocks
        .into_iter()
        .map(|(_, _, mut ids)| {
            ids.sort_unstable();
            ids
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures;

    /// A free seat `number` in `row` (A, B, …) at `price_cents`; its id and layout position
    /// are row × 100 + number.
    fn seat(row: &str, number: i32, price_cents: i64) -> seat::Model {
        let id = i64::from(row.as_bytes()[0] - b'A') * 100 + i64::from(number);
        seat::Model {
            row_label: row.into(),
            number,
            price_cents,
            ..fixtures::seat(id)
        }
    }

    #[test]
    fn only_consecutive_numbers_in_one_row_form_a_block() {
        // Row A: 1 2 _ 4 5 6; row B: 1 2.
        let seats = [
            seat("A", 1, 10),
            seat("A", 2, 10),
            seat("A", 4, 10),
            seat("A", 5, 10),
            seat("A", 6, 10),
            seat("B", 1, 10),
            seat("B", 2, 10),
        ];
        assert_eq!(adjacent_blocks(&seats, 3), vec![vec![4, 5, 6]]);
        assert_eq!(
            adjacent_blocks(&seats, 2),
            vec![vec![1, 2], vec![4, 5], vec![5, 6], vec![101, 102]]
        );
        assert!(adjacent_blocks(&seats, 4).is_empty());
    }

    #[test]
    fn dearer_blocks_come_first_then_the_layout_order() {
        let seats = [
            seat("A", 1, 10),
            seat("A", 2, 10),
            seat("B", 1, 50),
            seat("B", 2, 50),
        ];
        assert_eq!(adjacent_blocks(&seats, 2), vec![vec![101, 102], vec![1, 2]]);
    }

    #[test]
    fn a_block_is_priced_by_its_cheapest_seat() {
        let seats = [
            seat("A", 1, 90),
            seat("A", 2, 10),
            seat("B", 1, 50),
            seat("B", 2, 50),
        ];
        assert_eq!(adjacent_blocks(&seats, 2)[0], vec![101, 102]);
    }

    #[test]
    fn unsorted_input_still_gives_ascending_ids() {
        let seats = [seat("A", 3, 10), seat("A", 1, 10), seat("A", 2, 10)];
        assert_eq!(adjacent_blocks(&seats, 3), vec![vec![1, 2, 3]]);
        assert!(adjacent_blocks(&seats, 0).is_empty());
    }
}
