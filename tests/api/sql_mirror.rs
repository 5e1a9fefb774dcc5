//! `bench/sql/hold.sql` is the raw-SQL benchmark's copy of what onsale sends PostgreSQL for
//! one `holdSeats`. This test runs a real `holdSeats` through a proxy that records every
//! statement and checks that the copy runs the same statements, in the same order, so the
//! benchmark cannot drift from the code it mirrors.

use serde_json::json;

use crate::helpers::{Options, TestApp, data, fresh_pg_database};
use crate::pg_proxy::{PgProxy, host_port};

/// What a statement does, as far as the comparison goes: the verb, the table, and whether it
/// locks or counts ("SELECT seats FOR UPDATE", "INSERT hold_seats", "BEGIN").
fn shape(sql: &str) -> String {
    let text = sql
        .replace('"', "")
        .to_lowercase()
        .replace("epoch from", "epoch of");
    let words: Vec<&str> = text.split_whitespace().collect();
    let verb = words.first().copied().unwrap_or_default();
    let table_after = |keyword: &str| {
        words
            .windows(2)
            .find(|w| w[0] == keyword && !w[1].starts_with('('))
            .map(|w| w[1].trim_matches(|c: char| !c.is_alphanumeric() && c != '_'))
            .unwrap_or("?")
            .to_owned()
    };
    match verb {
        "select" if text.contains("count(") => format!("SELECT COUNT {}", table_after("from")),
        "select" if text.contains("for update") => {
            format!("SELECT {} FOR UPDATE", table_after("from"))
        }
        "select" if text.contains("for no key update") => {
            format!("SELECT {} FOR NO KEY UPDATE", table_after("from"))
        }
        "select" if text.contains("for key share") => {
            format!("SELECT {} FOR KEY SHARE", table_after("from"))
        }
        "select" => format!("SELECT {}", table_after("from")),
        "insert" => format!("INSERT {}", table_after("into")),
        "update" => format!("UPDATE {}", table_after("update")),
        "delete" => format!("DELETE {}", table_after("from")),
        // A statement of data-modifying CTEs: the tables it writes, in order.
        "with" => {
            let writes: Vec<String> = words
                .windows(3)
                .filter(|w| matches!(w[0], "delete" | "insert" | "update"))
                .map(|w| {
                    let table = if w[0] == "update" { w[1] } else { w[2] };
                    format!("{} {table}", w[0].to_uppercase())
                })
                .collect();
            format!("WITH {}", writes.join(", "))
        }
        other => other.to_uppercase(),
    }
}

/// The SQL statements a pgbench script runs, taking `\if` branches by `vars` (a variable not
/// given counts as 0); meta-commands other than `\if`/`\else`/`\endif` are skipped, and
/// `\gset` ends a statement as pgbench reads it.
fn script_statements(script: &str, vars: &[(&str, bool)]) -> Vec<String> {
    let mut active = vec![true];
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in script.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        if let Some(meta) = line.strip_prefix('\\') {
            let mut parts = meta.split_whitespace();
            match parts.next() {
                Some("if") => {
                    let var = parts.next().unwrap_or_default().trim_start_matches(':');
                    let on = vars.iter().any(|(name, value)| *name == var && *value);
                    let outer = *active.last().unwrap_or(&true);
                    active.push(outer && on);
                }
                Some("else") => {
                    let inner = active.pop().unwrap_or(true);
                    let outer = *active.last().unwrap_or(&true);
                    active.push(outer && !inner);
                }
                Some("endif") => {
                    active.pop();
                }
                _ => {}
            }
            continue;
        }
        if !*active.last().unwrap_or(&true) {
            continue;
        }
        let (sql, ends) = match line.split_once("\\gset") {
            Some((sql, _)) => (sql, true),
            None => (line, line.ends_with(';')),
        };
        current.push_str(sql.trim().trim_end_matches(';'));
        current.push(' ');
        if ends {
            statements.push(std::mem::take(&mut current).trim_end().to_owned());
        }
    }
    statements
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_sql_runs_what_a_hold_sends() {
    let url = fresh_pg_database().await;
    let proxy = PgProxy::start(host_port(&url)).await;
    // No background passes (expired holds, left-over changes, checkouts, webhook deliveries)
    // while statements are recorded: their first passes run at start-up, the next in an hour.
    let options = Options::default()
        .set("SWEEP_INTERVAL_MS", 3_600_000)
        .set("CHECKOUT_WORKER_INTERVAL_MS", 3_600_000)
        .set("WEBHOOK_WORKER_INTERVAL_MS", 3_600_000);
    let app = TestApp::spawn_on(&proxy.url_for(&url), options).await;
    let (event_id, seats) = app.create_event(1, 4).await;
    let token = app.token("mirror");
    // A first hold warms every cache (the waiting-room settings, prepared statements), so
    // what is recorded next is what every later hold sends.
    data(
        &app.hold_seats(&token, &event_id, &[&seats[0]]).await,
        "holdSeats",
    );
    proxy.take();
    let held = app
        .gql(
            Some(&token),
            crate::helpers::HOLD_SEATS,
            json!({"e": event_id, "s": [seats[1]]}),
        )
        .await;
    data(&held, "holdSeats");
    let sent: Vec<String> = proxy.take().iter().map(|s| shape(s)).collect();
    // The path of a free seat nobody else asks for, as the benchmark runs it.
    let mirrored: Vec<String> = script_statements(
        include_str!("../../bench/sql/hold.sql"),
        &[
            ("hot", false),
            ("c_free", true),
            ("l_free", true),
            ("l_reclaim", false),
        ],
    )
    .iter()
    .map(|s| shape(s))
    .collect();
    assert_eq!(
        sent, mirrored,
        "bench/sql/hold.sql no longer runs what holdSeats sends (left: sent by onsale, right: the script)"
    );
    app.stop().await;
}

#[test]
fn shapes_name_verb_table_and_locking() {
    assert_eq!(
        shape(
            r#"SELECT "seats"."id" FROM "seats" WHERE "seats"."id" IN ($1) ORDER BY "seats"."id" ASC FOR UPDATE"#
        ),
        "SELECT seats FOR UPDATE"
    );
    assert_eq!(
        shape(
            r#"SELECT COUNT(*) AS num_items FROM (SELECT "holds"."id" FROM "holds") AS "sub_query""#
        ),
        "SELECT COUNT holds"
    );
    assert_eq!(
        shape("INSERT INTO hold_seats (hold_id) VALUES (1)"),
        "INSERT hold_seats"
    );
    assert_eq!(shape("SET LOCAL lock_timeout = '500ms'"), "SET");
}

#[test]
fn scripts_are_read_as_pgbench_reads_them() {
    let script = "\\set n 1\n-- c\nSELECT 1 FROM a \\gset x_\n\\if :x\nUPDATE b SET c = 1\n  WHERE d;\n\\else\nROLLBACK;\n\\endif\nCOMMIT;\n";
    assert_eq!(
        script_statements(script, &[("x", true)]),
        vec!["SELECT 1 FROM a", "UPDATE b SET c = 1 WHERE d", "COMMIT"]
    );
    assert_eq!(
        script_statements(script, &[]),
        vec!["SELECT 1 FROM a", "ROLLBACK", "COMMIT"]
    );
}
