//! Choosing seats for `holdBestAvailable`: runs of consecutive seats in one row, best first,
//! and never one that strands a single free seat when another choice does not.
//!
//! A free seat is *lone* when both its neighbours are taken (held, booked or blocked) or the
//! row ends there: nobody buying two or more will ever take it. Taking a block out of a run of
//! free seats makes a new lone seat when exactly one free seat is left between the block and
//! the run's end. Blocks that make none come first; among equals, the dearer block (priced by
//! its cheapest seat), then the one earlier in the layout.

use std::collections::HashMap;

use entity::seat;

/// Runs of `count` consecutive seat numbers in one row of `free` seats (every free seat the
/// filters may or may not allow, so that neighbours are known), whose seats all pass
/// `eligible`; best first (fewest new lone seats, higher price, earlier in the layout); each
/// run's ids ascending (the lock order).
pub(crate) fn adjacent_blocks(
    free: &[seat::Model],
    count: usize,
    eligible: impl Fn(&seat::Model) -> bool,
) -> Vec<Vec<i64>> {
    if count == 0 {
        return Vec::new();
    }
    let mut by_row: HashMap<(&str, &str), Vec<&seat::Model>> = HashMap::new();
    for s in free {
        by_row
            .entry((&s.section, &s.row_label))
            .or_default()
            .push(s);
    }
    let mut blocks: Vec<(usize, i64, i32, Vec<i64>)> = Vec::new();
    for seats in by_row.values_mut() {
        seats.sort_by_key(|s| s.number);
        for run in seats.chunk_by(|a, b| b.number == a.number + 1) {
            for (start, window) in run.windows(count).enumerate() {
                if !window.iter().all(|s| eligible(s)) {
                    continue;
                }
                let left = start;
                let right = run.len() - start - count;
                let lone = usize::from(left == 1) + usize::from(right == 1);
                let price: i64 = window.iter().map(|s| s.price_cents).min().unwrap_or(0);
                let position = window[0].position;
                blocks.push((lone, price, position, window.iter().map(|s| s.id).collect()));
            }
        }
    }
    blocks.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    blocks
        .into_iter()
        .map(|(_, _, _, mut ids)| {
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

    fn any(_: &seat::Model) -> bool {
        true
    }

    /// A row of `layout` ('.' free, 'x' taken), seats numbered from 1, all at one price.
    fn row(layout: &str) -> Vec<seat::Model> {
        layout
            .chars()
            .zip(1..)
            .filter(|(c, _)| *c == '.')
            .map(|(_, n)| seat("A", n, 10))
            .collect()
    }

    /// The row after the first choice: taken seats of the block shown as 'H'.
    fn first_choice(layout: &str, count: usize) -> String {
        let seats = row(layout);
        let chosen = adjacent_blocks(&seats, count, any)
            .into_iter()
            .next()
            .unwrap_or_default();
        layout
            .chars()
            .zip(1..)
            .map(|(c, n)| if chosen.contains(&n) { 'H' } else { c })
            .collect()
    }

    /// Whether the first choice leaves a new lone seat in `layout`.
    fn strands_a_seat(layout: &str, count: usize) -> bool {
        let after = first_choice(layout, count);
        let before_lone = lone_seats(layout);
        lone_seats(&after).iter().any(|n| !before_lone.contains(n))
    }

    /// Numbers of the free seats whose neighbours are both taken or the row's end.
    fn lone_seats(layout: &str) -> Vec<usize> {
        let cells: Vec<char> = layout.chars().collect();
        let free = |i: Option<usize>| i.and_then(|i| cells.get(i)).is_some_and(|c| *c == '.');
        (0..cells.len())
            .filter(|&i| free(Some(i)) && !free(i.checked_sub(1)) && !free(Some(i + 1)))
            .map(|i| i + 1)
            .collect()
    }

    #[test]
    fn no_new_lone_seat_when_a_choice_without_one_exists() {
        // (row: '.' free, 'x' taken; count; the row after the first choice, or None where
        // every block of `count` strands a seat and any may be chosen)
        let table = [
            ("......", 2, Some("HH....")),
            ("x.....", 2, Some("xHH...")),
            ("x....x", 2, Some("xHH..x")),
            // Three free between taken seats strand one whatever two are taken there...
            ("x...x....", 2, Some("x...xHH..")),
            // ...but three of them fill the gap exactly.
            ("x...x....", 3, Some("xHHHx....")),
            ("...x..x", 2, Some("...xHHx")),
            ("xx.....", 3, Some("xxHHH..")),
            // An existing lone seat is not new.
            (".x...", 3, Some(".xHHH")),
            ("x...x..x", 1, Some("xH..x..x")),
            // Unavoidable.
            ("x...x", 2, None),
            ("x....", 3, None),
            (".....", 4, None),
            ("x..x", 1, None),
        ];
        for (layout, count, expected) in table {
            let got = first_choice(layout, count);
            assert_eq!(got.matches('H').count(), count, "{layout} × {count}: {got}");
            match expected {
                Some(expected) => {
                    assert_eq!(got, expected, "{layout} × {count}");
                    assert!(!strands_a_seat(layout, count), "{layout} × {count}");
                }
                None => assert!(strands_a_seat(layout, count), "{layout} × {count}"),
            }
        }
    }

    #[test]
    fn a_lone_seat_is_judged_against_every_free_seat_not_only_eligible_ones() {
        // Row A: 1 2 3 4 free; only 1–2 eligible (say, accessible). Taking 1–2 leaves 3–4
        // together: no lone seat.
        let seats = row("....");
        let blocks = adjacent_blocks(&seats, 2, |s| s.number <= 2);
        assert_eq!(blocks, vec![vec![1, 2]]);
        // Eligible 2–3 only: the one block leaves 1 and 4 alone; it is still offered.
        let blocks = adjacent_blocks(&seats, 2, |s| (2..=3).contains(&s.number));
        assert_eq!(blocks, vec![vec![2, 3]]);
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
        assert_eq!(adjacent_blocks(&seats, 3, any), vec![vec![4, 5, 6]]);
        assert_eq!(
            adjacent_blocks(&seats, 2, any),
            // 4–5 and 5–6 each strand a seat of 4–6, so they come last.
            vec![vec![1, 2], vec![101, 102], vec![4, 5], vec![5, 6]]
        );
        assert!(adjacent_blocks(&seats, 4, any).is_empty());
    }

    #[test]
    fn dearer_blocks_come_first_then_the_layout_order() {
        let seats = [
            seat("A", 1, 10),
            seat("A", 2, 10),
            seat("B", 1, 50),
            seat("B", 2, 50),
        ];
        assert_eq!(
            adjacent_blocks(&seats, 2, any),
            vec![vec![101, 102], vec![1, 2]]
        );
    }

    #[test]
    fn a_block_is_priced_by_its_cheapest_seat() {
        let seats = [
            seat("A", 1, 90),
            seat("A", 2, 10),
            seat("B", 1, 50),
            seat("B", 2, 50),
        ];
        assert_eq!(adjacent_blocks(&seats, 2, any)[0], vec![101, 102]);
    }

    #[test]
    fn unsorted_input_still_gives_ascending_ids() {
        let seats = [seat("A", 3, 10), seat("A", 1, 10), seat("A", 2, 10)];
        assert_eq!(adjacent_blocks(&seats, 3, any), vec![vec![1, 2, 3]]);
        assert!(adjacent_blocks(&seats, 0, any).is_empty());
    }
}
