//! The sales report: an event's seat counts and money, per category and in total, read in
//! one snapshot so that it matches the seat map at its `seq`.
