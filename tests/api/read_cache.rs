//! Seat maps as bytes: `GET /graphql` with persisted queries, `ETag` and `304`, gzip and
//! brotli — every form carries exactly the map `POST` gives, and none is ever older than a
//! committed change or a hold that has run out.

use std::io::Read;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

const MAP: &str = "query($e: ID!) { seatMap(eventId: $e) { seq states event { held available } seats { id status holdExpiresAt } } }";

fn sha(query: &str) -> String {
    hex::encode(Sha256::digest(query.as_bytes()))
}

/// `GET /graphql` with these parameters and headers: (status, headers, raw body).
async fn get(
    app: &TestApp,
    params: &[(&str, String)],
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let url = reqwest::Url::parse_with_params(&format!("{}/graphql", app.base), params)
        .expect("valid url");
    let mut request = app.client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("GET answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

fn persisted(hash: &str) -> String {
    json!({"persistedQuery": {"version": 1, "sha256Hash": hash}}).to_string()
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_with_persisted_query_etag_and_compression_carries_the_post_map() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (event_id, seats) = app.create_event(2, 5).await;
    let vars = json!({"e": event_id}).to_string();
    let by_post = app.gql(None, MAP, json!({"e": event_id})).await;
    assert!(by_post.get("errors").is_none(), "{by_post}");
    assert_eq!(by_post["data"]["seatMap"]["states"], "AAAAAAAAAA");

    // An unknown hash: the client must send the text once.
    let hash_only = [
        ("variables", vars.clone()),
        ("extensions", persisted(&sha(MAP))),
    ];
    let (status, _, body) = get(&app, &hash_only, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        json_of(&body)["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    // A hash that is not the text's is refused, and registers nothing.
    let wrong = [
        ("query", MAP.to_owned()),
        ("variables", vars.clone()),
        ("extensions", persisted(&"ab".repeat(32))),
    ];
    let (_, _, body) = get(&app, &wrong, &[]).await;
    assert_eq!(
        json_of(&body)["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );

    // Text and hash: answered and kept; afterwards the hash alone is enough.
    let with_text = [
        ("query", MAP.to_owned()),
        ("variables", vars.clone()),
        ("extensions", persisted(&sha(MAP))),
    ];
    let (status, headers, body) = get(&app, &with_text, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(json_of(&body), by_post, "GET answers what POST answers");
    let etag = headers["etag"].to_str().expect("ascii").to_owned();
    assert_eq!(headers["cache-control"], "no-cache");
    let (status, headers, body) = get(&app, &hash_only, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(json_of(&body), by_post);
    assert_eq!(headers["etag"], etag.as_str());

    // The client has it: 304, no body.
    let (status, headers, body) = get(&app, &hash_only, &[("if-none-match", &etag)]).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(headers["etag"], etag.as_str());

    // Compressed as the client asks, to the same bytes.
    let (_, headers, gz) = get(&app, &hash_only, &[("accept-encoding", "gzip")]).await;
    assert_eq!(headers["content-encoding"], "gzip");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .expect("gunzip");
    assert_eq!(json_of(&plain), by_post);
    let (_, headers, br) = get(
        &app,
        &hash_only,
        &[("accept-encoding", "gzip, deflate, br")],
    )
    .await;
    assert_eq!(headers["content-encoding"], "br");
    let mut plain = Vec::new();
    brotli::Decompressor::new(&br[..], 4096)
        .read_to_end(&mut plain)
        .expect("unbrotli");
    assert_eq!(json_of(&plain), by_post);
    // POST is compressed the same way.
    let response = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("accept-encoding", "gzip")
        .json(&json!({"query": MAP, "variables": {"e": event_id}}))
        .send()
        .await
        .expect("POST answered");
    assert_eq!(response.headers()["content-encoding"], "gzip");

    // A hold: the old ETag no longer matches, and the new map shows it.
    let alice = app.token("alice");
    data(
        &app.hold_seats(&alice, &event_id, &[&seats[0]]).await,
        "holdSeats",
    );
    let (status, headers, body) = get(&app, &hash_only, &[("if-none-match", &etag)]).await;
    assert_eq!(status, 200, "a change since the ETag: the new map");
    assert_ne!(headers["etag"], etag.as_str());
    let map = &json_of(&body)["data"]["seatMap"];
    assert_eq!(map["seq"], 1);
    assert_eq!(map["states"], "HAAAAAAAAA");
    assert_eq!(map["seats"][0]["status"], "HELD");
    assert_eq!(
        json_of(&body),
        app.gql(None, MAP, json!({"e": event_id})).await
    );

    // Mutations never run over GET.
    let mutation = "mutation($e: ID!, $s: [ID!]!) { holdSeats(eventId: $e, seatIds: $s) { id } }";
    let (status, headers, body) = get(
        &app,
        &[
            ("query", mutation.to_owned()),
            (
                "variables",
                json!({"e": event_id, "s": [seats[1]]}).to_string(),
            ),
        ],
        &[("authorization", &format!("Bearer {alice}"))],
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(
        json_of(&body)["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    assert_eq!(app.seat_statuses(&event_id).await[&seats[1]], "AVAILABLE");

    // Other queries work over GET too, uncached; GET without a query is still GraphiQL.
    let (status, _, body) = get(&app, &[("query", "{ events { id } }".to_owned())], &[]).await;
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["data"]["events"][0]["id"], event_id.as_str());
    assert_healthy(&app).await;
}

/// A stored map is not served past the moment a hold it shows runs out, even when nothing
/// is committed (the sweeper is held off here): the next read shows the seat AVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stored_map_is_not_served_past_a_shown_hold_running_out() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let options = Options::default()
            .set("HOLD_TTL_SECS", 1)
            .set("SWEEP_INTERVAL_MS", 600_000);
        let app = TestApp::spawn_with(backend, options).await;
        let (event_id, seats) = app.create_event(1, 3).await;
        let alice = app.token("alice");
        data(
            &app.hold_seats(&alice, &event_id, &[&seats[1]]).await,
            "holdSeats",
        );
        let first = app.gql(None, MAP, json!({"e": event_id})).await;
        assert_eq!(first["data"]["seatMap"]["states"], "AHA", "{backend:?}");
        // Served from memory while the hold lasts (same bytes, same seq).
        assert_eq!(app.gql(None, MAP, json!({"e": event_id})).await, first);
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let after = app.gql(None, MAP, json!({"e": event_id})).await;
        let map = &after["data"]["seatMap"];
        assert_eq!(map["seq"], 1, "{backend:?}: nothing committed since");
        assert_eq!(map["states"], "AAA", "{backend:?}: the hold ran out");
        assert_eq!(map["event"]["held"], 0);
        assert_eq!(map["seats"][1]["holdExpiresAt"], Value::Null);
        app.stop().await;
    }
}

/// Two instances, no Redis between them: readers on A during a stream of holds through B.
/// Every read that begins after B answered a hold shows that hold (and every earlier one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_on_one_instance_never_get_a_map_older_than_a_hold_made_on_another() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = TestApp::spawn_on(&a.database_url, Options::default()).await;
    let (event_id, seats) = a.create_event(4, 10).await;
    let vars = json!({"e": event_id}).to_string();
    let hash_only = [
        ("query", MAP.to_owned()),
        ("variables", vars),
        ("extensions", persisted(&sha(MAP))),
    ];
    let committed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let client = a.client.clone();
            let base = a.base.clone();
            let params = hash_only.clone();
            let committed = committed.clone();
            tokio::spawn(async move {
                let mut reads = 0;
                while committed.load(std::sync::atomic::Ordering::SeqCst) < 30 {
                    let at_least = committed.load(std::sync::atomic::Ordering::SeqCst);
                    let url = reqwest::Url::parse_with_params(&format!("{base}/graphql"), &params)
                        .expect("url");
                    let body: Value = client
                        .get(url)
                        .header("accept-encoding", "identity")
                        .send()
                        .await
                        .expect("GET")
                        .json()
                        .await
                        .expect("json");
                    let map = &body["data"]["seatMap"];
                    let held = map["states"]
                        .as_str()
                        .expect("states")
                        .chars()
                        .filter(|c| *c == 'H')
                        .count();
                    assert!(
                        held >= at_least && map["seq"].as_u64().expect("seq") as usize >= at_least,
                        "a read begun after {at_least} holds shows {held}: {map}"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for (i, seat) in seats.iter().take(30).enumerate() {
        let buyer = b.token(&format!("buyer-{i}"));
        data(&b.hold_seats(&buyer, &event_id, &[seat]).await, "holdSeats");
        committed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.expect("reader");
    }
    assert!(reads >= 4, "the readers ran ({reads} reads)");
    let map = a.gql(None, MAP, json!({"e": event_id})).await;
    assert_eq!(map["data"]["seatMap"]["seq"], 30);
}

/// How many seat-map answers the server made from `source` ("built" or "cache"), from its
/// metrics text.
fn answers_by(metrics: &str, source: &str) -> u64 {
    counter(
        metrics,
        &format!("onsale_seat_map_answers_total{{source=\"{source}\"}}"),
    )
}

/// Readers that miss together build the map once: the first builds, the others wait for its
/// answer (the server counts how each answer was made).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_that_miss_together_build_the_map_once() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (event_id, _) = app.create_event(10, 100).await;
    // Setting up read the map with another query; count from here.
    let before = app.metrics().await;
    let reads = (0..50).map(|_| app.gql(None, MAP, json!({"e": event_id})));
    let answers = futures::future::join_all(reads).await;
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "every reader the same map"
    );
    assert_eq!(answers[0]["data"]["seatMap"]["states"], "A".repeat(1000));
    let after = app.metrics().await;
    assert_eq!(
        answers_by(&after, "built") - answers_by(&before, "built"),
        1,
        "{after}"
    );
    assert_eq!(
        answers_by(&after, "cache") - answers_by(&before, "cache"),
        49
    );
}

/// Readers that wait for a build while the event keeps changing get that build's answer if
/// it was started after they asked (it shows every change made before they asked), instead
/// of each building the map in turn; and none gets a map without a hold that was answered
/// before its read began.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_waiting_through_changes_share_a_build_and_see_every_earlier_change() {
    const READERS: usize = 60;
    let app = TestApp::spawn(Backend::Postgres).await;
    let (event_id, seats) = app.create_event(20, 100).await;
    // A writer holds a seat every few milliseconds meanwhile, so that builds see changes.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let writer = async {
        let mut held = Vec::new();
        for (i, seat) in seats.iter().enumerate() {
            if stop.load(std::sync::atomic::Ordering::Acquire) {
                break;
            }
            let token = app.token(&format!("w{i}"));
            let body = app.hold_seats(&token, &event_id, &[seat]).await;
            assert!(body["errors"].is_null(), "{body}");
            held.push((seat.clone(), std::time::Instant::now()));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        held
    };
    let readers = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = app.metrics().await;
        let reads = (0..READERS).map(|_| async {
            let began = std::time::Instant::now();
            let body = app.gql(None, MAP, json!({"e": event_id})).await;
            (began, body)
        });
        let answers = futures::future::join_all(reads).await;
        let after = app.metrics().await;
        stop.store(true, std::sync::atomic::Ordering::Release);
        (before, answers, after)
    };
    let (held, (before, answers, after)) = tokio::join!(writer, readers);
    let order = app.seat_ids(&event_id).await;
    for (began, body) in &answers {
        let states = body["data"]["seatMap"]["states"].as_str().expect("states");
        for (seat, answered) in &held {
            if answered < began {
                let at = order.iter().position(|s| s == seat).expect("seat");
                assert_eq!(
                    &states[at..=at],
                    "H",
                    "a hold answered before the read began is on its map"
                );
            }
        }
    }
    let built = answers_by(&after, "built") - answers_by(&before, "built");
    let cached = answers_by(&after, "cache") - answers_by(&before, "cache");
    assert_eq!(built + cached, READERS as u64, "{after}");
    assert!(
        built <= (READERS / 4) as u64,
        "waiting readers shared builds ({built} builds for {READERS} readers)"
    );
}
