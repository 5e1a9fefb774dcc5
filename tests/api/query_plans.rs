//! The hold path's statements stay cheap as an on-sale fills up. A fresh sale's tables grow
//! from nothing faster than autovacuum analyses them, so PostgreSQL plans them with no
//! statistics; these tests record the statement onsale really sends (through the statement
//! proxy) and check what its plan reads, not which index it names.

use sea_orm::{ConnectOptions, ConnectionTrait, Database, Statement};

use crate::helpers::{Options, TestApp, data, fresh_pg_database};
use crate::pg_proxy::{PgProxy, host_port};

/// Active holds of other buyers of the event, far more than any one buyer may have.
const OTHER_HOLDS: usize = 5_000;

/// The rows every scan node of a text `EXPLAIN ANALYZE` plan produced (rows × loops).
fn rows_scanned(plan: &[String]) -> u64 {
    plan.iter()
        .filter(|line| line.contains("Scan"))
        .filter_map(|line| {
            let actual = line.split("(actual ").nth(1)?;
            let field = |name: &str| -> Option<u64> {
                let rest = actual.split(&format!("{name}=")).nth(1)?;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            };
            Some(field("rows")? * field("loops")?)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_buyer_limit_check_reads_only_the_buyers_own_holds() {
    let url = fresh_pg_database().await;
    let proxy = PgProxy::start(host_port(&url)).await;
    let options = Options::default()
        .set("SWEEP_INTERVAL_MS", 3_600_000)
        .set("CHECKOUT_WORKER_INTERVAL_MS", 3_600_000)
        .set("WEBHOOK_WORKER_INTERVAL_MS", 3_600_000);
    let app = TestApp::spawn_on(&proxy.url_for(&url), options).await;
    let (event_id, seats) = app.create_event(1, 4).await;
    // One connection: a prepared statement lives in the session that prepared it.
    let mut one = ConnectOptions::new(url.as_str());
    one.max_connections(1).min_connections(1);
    let db = Database::connect(one).await.expect("connect");
    // Thousands of other buyers' active holds, as in the middle of an on-sale, and no
    // statistics about them yet.
    db.execute_unprepared(&format!(
        "INSERT INTO holds (id, event_id, user_id, status, expires_at_ms, total_cents, \
         created_at_ms, updated_at_ms, extensions_used) \
         SELECT 'other-' || g, {event_id}, 'other-' || g, 'ACTIVE', 4102444800000, 0, 0, 0, 0 \
         FROM generate_series(1, {OTHER_HOLDS}) g"
    ))
    .await
    .expect("other buyers' holds");

    let token = app.token("plan-buyer");
    data(
        &app.hold_seats(&token, &event_id, &[&seats[0]]).await,
        "holdSeats",
    );
    proxy.take();
    data(
        &app.hold_seats(&token, &event_id, &[&seats[1]]).await,
        "holdSeats",
    );
    let sent = proxy.take();
    let check = sent
        .iter()
        .find(|s| s.to_lowercase().contains("count(") && s.contains("holds"))
        .unwrap_or_else(|| panic!("no count of holds among what a hold sent: {sent:#?}"))
        .clone();

    // As the server runs it: prepared, its parameters bound (user, event, status, now), past
    // the executions after which PostgreSQL may switch to a generic plan.
    db.execute_unprepared(&format!("PREPARE buyer_check AS {check}"))
        .await
        .expect("prepare the recorded statement");
    let args = format!("('plan-buyer', {event_id}, 'ACTIVE', 0)");
    for _ in 0..6 {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("EXECUTE buyer_check{args}"),
            ))
            .await
            .expect("execute")
            .expect("a count");
        let count: i64 = row.try_get_by_index(0).expect("count");
        assert_eq!(count, 2, "the buyer has exactly the two holds it made");
    }
    let plan: Vec<String> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("EXPLAIN ANALYZE EXECUTE buyer_check{args}"),
        ))
        .await
        .expect("explain")
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("plan line"))
        .collect();
    let scanned = rows_scanned(&plan);
    assert!(
        scanned <= 10,
        "the buyer-limit check read {scanned} rows among {OTHER_HOLDS} other holds:\n{}",
        plan.join("\n")
    );
    app.stop().await;
}

#[test]
fn rows_scanned_adds_every_scan_node() {
    let plan = [
        "Aggregate  (cost=13.14..13.15 rows=1 width=8) (actual time=0.6..0.6 rows=1 loops=1)",
        "  ->  Bitmap Heap Scan on holds  (cost=9.12..13.14 rows=1 width=0) (actual time=0.5..0.5 rows=4 loops=1)",
        "        ->  Bitmap Index Scan on ix_holds_status_expiry  (cost=0.00..4.37 rows=9 width=0) (actual time=0.5..0.5 rows=5598 loops=1)",
        "        ->  Index Scan on x  (actual time=0.0..0.0 rows=2 loops=3)",
    ]
    .map(str::to_owned);
    assert_eq!(rows_scanned(&plan), 4 + 5_598 + 6);
}
