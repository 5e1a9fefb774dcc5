//! Seat-map reads: many concurrent readers of one large event's full seat map, the query a
//! live seat-map page makes on load and on reconnect.

use std::time::Duration;

use crate::cli::SeatmapReadArgs;
use crate::ops;
use crate::report::{Report, Section};
use crate::scenarios::{Ctx, run_readers, warm_connections};

pub async fn run(ctx: &Ctx, args: &SeatmapReadArgs) -> anyhow::Result<Report> {
    let mut report = Report::new("seatmap-read");
    report.param("seats", args.seats);
    report.param("readers", args.readers);
    report.param("duration_secs", args.duration_secs);
    report.param("form", format!("{:?}", args.form));
    let event = ctx.create_event("seatmap-read", args.seats).await?;
    report.param("event", event.id.as_str());

    warm_connections(&ctx.api, args.readers).await;
    let (stats, elapsed) = run_readers(
        &ctx.api,
        &event.id,
        args.readers,
        Duration::from_secs(args.duration_secs),
        args.form,
    )
    .await?;
    report.metric(
        "seat maps/s",
        stats.count() as f64 / elapsed.as_secs_f64(),
        "req/s",
    );
    report.metric(
        "seats served/s",
        (stats.count() as f64 * args.seats as f64) / elapsed.as_secs_f64(),
        "seats/s",
    );
    report.section(Section::new("seatMap", stats, elapsed));

    let map = ops::seat_statuses(&ctx.api, &event.id).await?;
    let available = map.with_status("AVAILABLE").count();
    report.check(
        "the seat map lists every seat, all AVAILABLE",
        map.order.len() == args.seats && available == args.seats,
        format!("{} seats, {available} AVAILABLE", map.order.len()),
    );
    Ok(report)
}
