//! Real processes for fault tests: the `onsale` binary as a child process (to kill -9), a
//! PostgreSQL cluster of a test's own (to restart), and the seat invariants checked in SQL.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::helpers::JWT_SECRET;

/// The `onsale` binary serving on its own port, as a child process.
pub struct OnsaleProcess {
    child: Option<Child>,
    pub base: String,
    log: PathBuf,
}

impl OnsaleProcess {
    /// Starts `onsale` on `127.0.0.1:port` with `extra` settings and waits until `/healthz`
    /// answers.
    pub async fn start(
        database_url: &str,
        redis_url: Option<&str>,
        port: u16,
        extra: &[(&str, &str)],
    ) -> Self {
        let dir = std::env::temp_dir();
        let log = dir.join(format!(
            "onsale-child-{port}-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onsale"));
        // A clean environment (and no `.env` in the working directory): only what we set.
        cmd.env_clear()
            .current_dir(&dir)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", JWT_SECRET)
            .env("SEED_DEMO", "false")
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        if let Some(url) = redis_url {
            cmd.env("REDIS_URL", url);
        }
        cmd.envs(extra.iter().copied());
        let child = cmd.spawn().expect("the onsale binary starts");
        let mut process = Self {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        process.wait_healthy(Duration::from_secs(30)).await;
        process
    }

    async fn wait_healthy(&mut self, within: Duration) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .expect("http client");
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("onsale exited with {status} at start:\n{}", self.log_tail());
            }
            let healthy = client
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // polls until healthy
        }
        panic!("onsale did not become healthy:\n{}", self.log_tail());
    }

    /// SIGKILL: no drain, no cleanup, exactly like a crashed machine.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as an orchestrator stops an instance, and waits (bounded) for the exit.
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the process is running");
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("waits for the child") {
                return status;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("onsale did not exit after SIGTERM:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(25)).await; // polls until it exits
        }
    }

    /// The last lines of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for OnsaleProcess {
    fn drop(&mut self) {
        self.kill();
        // Keep the log of a failed test for a look; drop it otherwise.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

const PG_OWN_CLUSTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-own-cluster.sh");

/// A PostgreSQL cluster of the test's own (`scripts/pg-own-cluster.sh`), so stopping it
/// disturbs no other test. Destroyed on drop.
pub struct OwnPostgres {
    dir: PathBuf,
    port: u16,
}

impl OwnPostgres {
    /// initdb into a temp dir and start on a free port.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("onsale-own-pg-{}", uuid::Uuid::new_v4()));
        let mut last_error = String::new();
        // Another process may take the port between probing and binding: try a few.
        for _ in 0..3 {
            let port = crate::helpers::free_port();
            match run_pg_own_cluster("start", &dir, port).await {
                Ok(()) => return Self { dir, port },
                Err(err) => last_error = err,
            }
        }
        let _ = run_pg_own_cluster("destroy", &dir, 0).await;
        panic!("could not start a PostgreSQL of the test's own: {last_error}");
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Fast shutdown: open transactions roll back, every connection is cut.
    pub async fn stop(&self) {
        self.run("stop").await.expect("PostgreSQL stops");
    }

    /// Starts it again on the same port; returns once it accepts connections.
    pub async fn start_again(&self) {
        self.run("start").await.expect("PostgreSQL starts again");
    }

    async fn run(&self, action: &str) -> Result<(), String> {
        run_pg_own_cluster(action, &self.dir, self.port).await
    }
}

async fn run_pg_own_cluster(action: &str, dir: &std::path::Path, port: u16) -> Result<(), String> {
    let out = tokio::process::Command::new(PG_OWN_CLUSTER)
        .arg(action)
        .arg(dir)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {PG_OWN_CLUSTER}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pg-own-cluster.sh {action} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(PG_OWN_CLUSTER)
            .arg("destroy")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `sql` and returns the first column of every row as an integer.
pub async fn ints(conn: &DatabaseConnection, sql: &str) -> Vec<i64> {
    let backend = conn.get_database_backend();
    conn.query_all_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| row.try_get_by_index::<i64>(0).expect("an integer column"))
        .collect()
}

/// Runs `sql` and returns the first column of every row as text.
pub async fn texts(conn: &DatabaseConnection, sql: &str) -> Vec<String> {
    let backend = conn.get_database_backend();
    conn.query_all_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("a text column"))
        .collect()
}

/// Checks, straight in the database, what the contract promises about an event's seats:
/// no seat in two active holds or two active bookings (or in both), every HELD seat held by
/// exactly one ACTIVE hold that lists it, every BOOKED seat booked by exactly one CONFIRMED
/// booking that lists it, no active claim pointing at a seat in another state, and a change
/// log without gaps up to the event's `seq`.
pub async fn assert_seat_invariants(database_url: &str, event_id: &str) {
    let conn = Database::connect(database_url).await.expect("connect");
    let e: i64 = event_id.parse().expect("numeric event id");
    let checks = [
        (
            "seats in two active holds",
            "SELECT hs.seat_id FROM hold_seats hs JOIN seats s ON s.id = hs.seat_id \
             WHERE hs.active AND s.event_id = {E} GROUP BY hs.seat_id HAVING COUNT(*) > 1",
        ),
        (
            "seats in two active bookings",
            "SELECT bs.seat_id FROM booking_seats bs JOIN seats s ON s.id = bs.seat_id \
             WHERE bs.active AND s.event_id = {E} GROUP BY bs.seat_id HAVING COUNT(*) > 1",
        ),
        (
            "seats both actively held and booked",
            "SELECT hs.seat_id FROM hold_seats hs \
             JOIN booking_seats bs ON bs.seat_id = hs.seat_id AND bs.active \
             JOIN seats s ON s.id = hs.seat_id WHERE hs.active AND s.event_id = {E}",
        ),
        (
            "HELD seats not held by exactly one ACTIVE hold",
            "SELECT s.id FROM seats s WHERE s.event_id = {E} AND s.status = 'HELD' AND ( \
               SELECT COUNT(*) FROM hold_seats hs JOIN holds h ON h.id = hs.hold_id \
               WHERE hs.seat_id = s.id AND hs.active AND h.status = 'ACTIVE' AND h.id = s.hold_id \
             ) <> 1",
        ),
        (
            "active hold claims on seats that are not HELD by that ACTIVE hold",
            "SELECT hs.seat_id FROM hold_seats hs JOIN holds h ON h.id = hs.hold_id \
             JOIN seats s ON s.id = hs.seat_id \
             WHERE hs.active AND s.event_id = {E} AND NOT ( \
               s.status = 'HELD' AND s.hold_id = hs.hold_id AND h.status = 'ACTIVE')",
        ),
        (
            "BOOKED seats not booked by exactly one CONFIRMED booking",
            "SELECT s.id FROM seats s WHERE s.event_id = {E} AND s.status = 'BOOKED' AND ( \
               SELECT COUNT(*) FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id \
               WHERE bs.seat_id = s.id AND bs.active AND b.status = 'CONFIRMED' \
                 AND b.id = s.booking_id \
             ) <> 1",
        ),
        (
            "active booking claims on seats that are not BOOKED by that CONFIRMED booking",
            "SELECT bs.seat_id FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id \
             JOIN seats s ON s.id = bs.seat_id \
             WHERE bs.active AND s.event_id = {E} AND NOT ( \
               s.status = 'BOOKED' AND s.booking_id = bs.booking_id AND b.status = 'CONFIRMED')",
        ),
    ];
    let mut problems = Vec::new();
    for (what, sql) in checks {
        let bad = ints(&conn, &sql.replace("{E}", &e.to_string())).await;
        if !bad.is_empty() {
            problems.push(format!("{what}: {bad:?}"));
        }
    }
    let seq = ints(&conn, &format!("SELECT seq FROM events WHERE id = {e}")).await;
    let logged = ints(
        &conn,
        &format!(
            "SELECT COUNT(*) FROM seat_changes WHERE event_id = {e} \
             UNION ALL SELECT COUNT(DISTINCT seq) FROM seat_changes WHERE event_id = {e} \
             UNION ALL SELECT COALESCE(MAX(seq), 0) FROM seat_changes WHERE event_id = {e}"
        ),
    )
    .await;
    if logged != vec![seq[0]; 3] {
        problems.push(format!(
            "change log (rows, distinct seqs, max seq) {logged:?} does not match the event's seq {}",
            seq[0]
        ));
    }
    let _ = conn.close().await;
    assert!(
        problems.is_empty(),
        "seat invariants broken:\n  {}",
        problems.join("\n  ")
    );
}
