//! A subscriber that stops reading cannot hurt the server: once it falls more than the
//! buffer behind it is dropped with an error telling it to resume with `afterSeq`.

use futures::StreamExt;
use onsale::auth::User;
use onsale::booking::admission::Admission;
use onsale::booking::event_input::{NewEvent, NewRow, NewSection, SaleSettings};
use onsale::booking::events::Viewer;
use onsale::config::Config;
use onsale::domain::area::AreaQuantities;
use onsale::domain::input::SeatIds;
use onsale::domain::sale::BuyerLimits;
use onsale::realtime::SUBSCRIBER_BUFFER;
use onsale::startup::Application;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_stops_reading_is_dropped_with_a_resume_hint() {
    let url = fresh_sqlite_database();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("JWT_SECRET", JWT_SECRET),
        ("SEED_DEMO", "false"),
    ];
    let config = Config::from_lookup(|k| {
        env.iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .expect("config");
    let app = Application::build(config).await.expect("builds");
    let service = app.booking().clone();
    let event = service
        .create_event(NewEvent {
            name: "Slow".into(),
            venue: "Hall".into(),
            starts_at_ms: 0,
            sections: vec![NewSection {
                name: "S".into(),
                rows: (0..12)
                    .map(|r| NewRow {
                        label: format!("R{r}"),
                        seats: 100,
                        price_cents: 100,
                        category: None,
                        accessible: Vec::new(),
                    })
                    .collect(),
            }],
            sale: SaleSettings::default(),
            limits: BuyerLimits::default(),
            categories: Vec::new(),
            areas: Vec::new(),
        })
        .await
        .expect("event");
    let mut feed = Box::pin(app.feed().open(event.id, None).await.expect("feed"));
    // More changes than the buffer holds, while the subscriber reads nothing.
    let first_seat = service
        .seat_map(event.id, None, Viewer::Public)
        .await
        .expect("map")
        .seats[0]
        .id;
    let holds = SUBSCRIBER_BUFFER / 10 + 10;
    for i in 0..holds {
        let user = User {
            id: format!("u{i}"),
            admin: false,
        };
        let start = first_seat + i64::try_from(i * 10).expect("fits");
        let ids: Vec<String> = (start..start + 10).map(|id| id.to_string()).collect();
        service
            .hold_seats(
                &user,
                event.id,
                SeatIds::parse(&ids, 10).expect("ids"),
                AreaQuantities::default(),
                None,
                Admission::Direct(None),
            )
            .await
            .expect("held");
    }
    let first = feed.next().await.expect("an item");
    let err = first.expect_err("the lagging subscriber gets an error, not stale data");
    assert_eq!(err.code(), "RETRY_LATER");
    assert!(err.to_string().contains("afterSeq"), "{err}");
    assert!(feed.next().await.is_none(), "and is dropped");
    // Resuming with afterSeq from the start replays everything in order.
    let mut resumed = Box::pin(app.feed().open(event.id, Some(0)).await.expect("feed"));
    for expected in 1..=i64::try_from(holds * 10).expect("fits") {
        let change = resumed.next().await.expect("item").expect("change");
        assert_eq!(change.seq, expected);
    }
}
