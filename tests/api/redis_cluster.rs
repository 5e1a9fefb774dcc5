//! onsale on a real Redis Cluster (`REDIS_CLUSTER_NODES`): three masters with a replica
//! each, started by the test (`redis-server --cluster-enabled yes`, `redis-cli --cluster
//! create`). Two instances share it: the seat gate under a storm, the cross-instance feed,
//! the waiting room, queued booking and the rate limits work on it, and a master killed
//! mid-storm (its replica promoted) leaves exactly one winner per seat, with the feed
//! recovering through `afterSeq`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws::{Protocol, Subscription};

use ops::{CONFIGURE_WAITING_ROOM as CONFIGURE, JOIN_QUEUE as JOIN, REQUEST_SEATS, SEAT_REQUEST};

/// A Redis Cluster of the test's own: `masters` masters with one replica each.
struct OwnCluster {
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    dir: PathBuf,
}

fn redis_cli() -> String {
    // Beside redis-server if the scripts found it somewhere special.
    if let Ok(server) = std::env::var("TEST_REDIS_SERVER_BIN") {
        let cli = PathBuf::from(server).with_file_name("redis-cli");
        if cli.exists() {
            return cli.display().to_string();
        }
    }
    "redis-cli".to_owned()
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(redis_cli())
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl OwnCluster {
    fn start(masters: usize) -> Self {
        let bin = std::env::var("TEST_REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let dir =
            std::env::temp_dir().join(format!("onsale-cluster-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let ports: Vec<u16> = (0..masters * 2).map(|_| free_port()).collect();
        let children = ports
            .iter()
            .map(|port| {
                Some(
                    Command::new(&bin)
                        .args([
                            "--port",
                            &port.to_string(),
                            "--bind",
                            "127.0.0.1",
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            &format!("nodes-{port}.conf"),
                            "--cluster-node-timeout",
                            "1000",
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--repl-diskless-sync-delay",
                            "0",
                            "--dir",
                            &dir.display().to_string(),
                        ])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("redis-server starts"),
                )
            })
            .collect();
        let cluster = Self {
            ports,
            children,
            dir,
        };
        for port in &cluster.ports {
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "redis {port} listens"
                );
                std::thread::sleep(Duration::from_millis(20)); // polls until it listens
            }
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new(redis_cli())
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create runs");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_ok(&cluster.ports.clone());
        // A replica that never synced cannot take over: wait for every replica's link.
        let started = Instant::now();
        for port in &cluster.ports {
            loop {
                let info = cli(*port, &["INFO", "replication"]);
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "replica {port} synced"
                );
                std::thread::sleep(Duration::from_millis(100)); // polls until it syncs
            }
        }
        cluster
    }

    /// Waits until every node in `ports` says the cluster is ok.
    fn wait_ok(&self, ports: &[u16]) {
        let started = Instant::now();
        for port in ports {
            while !cli(*port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "cluster ok on {port}"
                );
                std::thread::sleep(Duration::from_millis(100)); // polls until it converges
            }
        }
    }

    fn nodes_setting(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the master serving `key`'s slot.
    fn master_of(&self, key: &str) -> u16 {
        let slot: u16 = cli(self.ports[0], &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("slot");
        for line in cli(self.ports[0], &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1]
                .split(['@', ':'])
                .nth(1)
                .and_then(|p| p.parse().ok())
                .expect("node port");
            for range in &fields[8..] {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>())
                    && (lo..=hi).contains(&slot)
                {
                    return port;
                }
            }
        }
        panic!("no master serves slot {slot}");
    }

    fn kill(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).expect("a node");
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn alive(&self) -> Vec<u16> {
        self.ports
            .iter()
            .zip(&self.children)
            .filter(|(_, c)| c.is_some())
            .map(|(p, _)| *p)
            .collect()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn on_cluster(cluster: &OwnCluster) -> Options {
    Options::default()
        .set("REDIS_CLUSTER_NODES", cluster.nodes_setting())
        .set("RATE_LIMIT_USER_PER_SEC", 0)
}

/// Holds `seat` for `count` different users at once, dealt over `apps`; each user asks again
/// while told `RETRY_LATER` (as a client should). Returns the final answer of each.
async fn storm(
    apps: &[&TestApp],
    event_id: &str,
    seat: &str,
    tag: &str,
    count: usize,
) -> Vec<Value> {
    join_all((0..count).map(|i| {
        let app = apps[i % apps.len()];
        let token = app.token(&format!("{tag}-{i}"));
        async move {
            let seats = [seat];
            retrying(|| app.hold_seats(&token, event_id, &seats)).await
        }
    }))
    .await
}

fn codes(answers: &[Value]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for body in answers {
        *counts
            .entry(error_code(body).unwrap_or_else(|| "OK".into()))
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gate_feed_waiting_room_and_queue_work_on_a_cluster() {
    let cluster = OwnCluster::start(3);
    let a = TestApp::spawn_with(Backend::Postgres, on_cluster(&cluster)).await;
    let b = TestApp::spawn_on(&a.database_url, on_cluster(&cluster)).await;
    let (event_id, seats) = a.create_event(1, 10).await;

    // The feed: a change made on B reaches A's subscriber (only Redis connects them).
    let mut sub = Subscription::seat_changes(&a.base, Protocol::TransportWs, &event_id, None).await;
    let body = b
        .hold_seats(&b.token("alice"), &event_id, &[&seats[0]])
        .await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    let change = sub.next_change(Duration::from_secs(5)).await;
    assert_eq!(
        (
            change["seatId"].as_str(),
            change["status"].as_str(),
            change["seq"].as_i64()
        ),
        (Some(seats[0].as_str()), Some("HELD"), Some(1))
    );
    let body = a.hold_seats(&a.token("bob"), &event_id, &[&seats[1]]).await;
    assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE");
    let change = sub.next_change(Duration::from_secs(5)).await;
    assert_eq!(change["seatId"], seats[1].as_str());

    // The gate under a storm on one seat, through both instances: one winner.
    let answers = storm(&[&a, &b], &event_id, &seats[2], "storm", 300).await;
    let counts = codes(&answers);
    assert_eq!(counts.get("OK"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("SEAT_UNAVAILABLE"), Some(&299), "{counts:?}");
    // The gate's claims live in the cluster: a claim put there blocks its seat on both
    // instances (until its TTL runs out).
    let key = onsale::booking::gate::keys(
        &redis_namespace(&a).await,
        event_id.parse().expect("id"),
        &[seats[3].parse().expect("id")],
    )
    .remove(0);
    let client = redis::cluster::ClusterClient::new(cluster.nodes_setting().split(','))
        .expect("cluster client");
    let mut conn = client
        .get_async_connection()
        .await
        .expect("cluster connection");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("claim-of-another-instance")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .expect("set a claim");
    for app in [&a, &b] {
        let body = app
            .hold_seats(&app.token("dave"), &event_id, &[&seats[3]])
            .await;
        assert_eq!(
            expect_error(&body),
            "SEAT_UNAVAILABLE",
            "claimed in the cluster"
        );
    }

    // The waiting room: on via A, B refuses a hold without admission; a joined buyer is
    // admitted and holds with the admission.
    let (room_event, room_seats) = a.create_event(1, 4).await;
    let input = ops::WaitingRoomInput {
        enabled: true,
        opens_at: None,
        admit_per_second: 20,
        admission_ttl_secs: 60,
    };
    let body = a
        .gql(
            Some(&a.admin_token()),
            CONFIGURE,
            ops::vars::configure_waiting_room(&room_event, &input),
        )
        .await;
    assert_eq!(data(&body, "configureWaitingRoom")["enabled"], true);
    let carol = b.token("carol");
    let started = Instant::now();
    let admission = loop {
        let body = retrying(|| b.gql(Some(&carol), JOIN, json!({"e": room_event}))).await;
        let ticket = data(&body, "joinQueue");
        if let Some(token) = ticket["admissionToken"].as_str() {
            break token.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "carol is admitted: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // polls until admitted
    };
    let hold = |admission: Option<String>| {
        let req = b
            .client
            .post(format!("{}/graphql", b.base))
            .bearer_auth(&carol)
            .json(
                &json!({"query": HOLD_SEATS, "variables": {"e": room_event, "s": [room_seats[0]]}}),
            );
        let req = match admission {
            Some(token) => req.header("x-admission-token", token),
            None => req,
        };
        async move {
            req.send()
                .await
                .expect("sent")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    assert_eq!(expect_error(&hold(None).await), "FORBIDDEN");
    assert_eq!(
        data(&hold(Some(admission)).await, "holdSeats")["status"],
        "ACTIVE"
    );

    // Queued booking: 40 requests for 8 seats (5 each) through both instances; each seat
    // goes to its first request in queue order, the rest get SEAT_UNAVAILABLE.
    let (queue_event, queue_seats) = a.create_event(1, 8).await;
    let off = ops::WaitingRoomInput {
        enabled: false,
        ..input
    };
    data(
        &a.gql(
            Some(&a.admin_token()),
            CONFIGURE,
            ops::vars::configure_waiting_room(&queue_event, &off),
        )
        .await,
        "configureWaitingRoom",
    );
    let buyers: Vec<(String, usize)> = (0..40)
        .map(|i| (a.token(&format!("q-{i}")), i % 8))
        .collect();
    let queued: Vec<Value> = join_all(buyers.iter().enumerate().map(|(i, (token, seat))| {
        let app = if i % 2 == 0 { &a } else { &b };
        let vars = json!({"e": queue_event, "s": [queue_seats[*seat]], "k": format!("q-{i}")});
        async move { retrying(|| app.gql(Some(token), REQUEST_SEATS, vars.clone())).await }
    }))
    .await;
    let mut outcomes = Vec::new();
    for (i, body) in queued.iter().enumerate() {
        let request = data(body, "requestSeats").clone();
        let id = request["id"].as_str().expect("request id").to_owned();
        let token = &buyers[i].0;
        let started = Instant::now();
        let answer = loop {
            let body = a.gql(Some(token), SEAT_REQUEST, json!({"id": id})).await;
            let answer = data(&body, "seatRequest").clone();
            if answer["status"] != "QUEUED" {
                break answer;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "request {i} answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await; // polls until answered
        };
        outcomes.push((
            request["queueNumber"].as_i64().expect("number"),
            buyers[i].1,
            answer,
        ));
    }
    outcomes.sort_by_key(|(number, _, _)| *number);
    let numbers: Vec<i64> = outcomes.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(numbers, (1..=40).collect::<Vec<_>>());
    let mut taken = HashSet::new();
    for (number, seat, answer) in &outcomes {
        if taken.insert(*seat) {
            assert_eq!(
                answer["status"], "DONE",
                "request {number} is its seat's first: {answer}"
            );
        } else {
            assert_eq!(
                (answer["status"].as_str(), answer["errorCode"].as_str()),
                (Some("FAILED"), Some("SEAT_UNAVAILABLE")),
                "request {number}: {answer}"
            );
        }
    }
    assert_eq!(taken.len(), 8);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_mid_storm_leaves_one_winner_per_seat() {
    const SEATS: usize = 12;
    const PER_SEAT: usize = 40;
    let mut cluster = OwnCluster::start(3);
    let a = TestApp::spawn_with(Backend::Postgres, on_cluster(&cluster)).await;
    let b = TestApp::spawn_on(&a.database_url, on_cluster(&cluster)).await;
    let (event_id, seats) = a.create_event(1, SEATS + 2).await;
    let namespace = redis_namespace(&a).await;
    let gate_key = format!("onsale:{namespace}:gate:{{e{event_id}}}:s{}", seats[0]);
    let victim = cluster.master_of(&gate_key);

    // Storms on every seat at once, through both instances; the master holding the event's
    // gate keys is killed 30 ms in.
    let apps = [&a, &b];
    let tags: Vec<String> = seats.iter().map(|seat| format!("s{seat}")).collect();
    let storms = join_all(
        seats[..SEATS]
            .iter()
            .zip(&tags)
            .map(|(seat, tag)| storm(&apps, &event_id, seat, tag, PER_SEAT)),
    );
    let killer = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        cluster.kill(victim);
    };
    let began = Instant::now();
    let (answers, ()) = tokio::join!(storms, killer);
    println!(
        "{} holds over {} ms; master {victim} killed at 30 ms",
        SEATS * PER_SEAT,
        began.elapsed().as_millis()
    );
    for (seat, answers) in seats.iter().zip(&answers) {
        let counts = codes(answers);
        assert_eq!(counts.get("OK"), Some(&1), "seat {seat}: {counts:?}");
        assert_eq!(
            counts.get("SEAT_UNAVAILABLE"),
            Some(&(PER_SEAT - 1)),
            "seat {seat}: {counts:?}"
        );
    }
    let statuses = a.seat_statuses(&event_id).await;
    for seat in &seats[..SEATS] {
        assert_eq!(statuses[seat], "HELD", "seat {seat}");
    }

    // The replica takes over; the gate works again on the new master and the feed replays
    // every change from the log with afterSeq.
    cluster.wait_ok(&cluster.alive());
    let after = Instant::now();
    loop {
        let late = b.token("late");
        let wanted = [seats[SEATS].as_str()];
        let body = retrying(|| b.hold_seats(&late, &event_id, &wanted)).await;
        if error_code(&body).is_none() {
            break;
        }
        assert!(
            after.elapsed() < Duration::from_secs(20),
            "holds work after failover: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await; // polls until it recovers
    }
    let mut sub =
        Subscription::seat_changes(&a.base, Protocol::TransportWs, &event_id, Some(0)).await;
    let mut seen = Vec::new();
    for _ in 0..=SEATS {
        let change = sub.next_change(Duration::from_secs(5)).await;
        seen.push(change["seq"].as_i64().expect("seq"));
    }
    assert_eq!(seen, (1..=SEATS as i64 + 1).collect::<Vec<_>>());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_are_shared_through_a_cluster() {
    let cluster = OwnCluster::start(3);
    let options = on_cluster(&cluster)
        .set("RATE_LIMIT_USER_PER_SEC", 1)
        .set("RATE_LIMIT_PERIOD_SECS", 60)
        .set("RATE_LIMIT_REDIS_TIMEOUT_MS", 5_000);
    let a = TestApp::spawn_with(Backend::Postgres, options.clone()).await;
    let b = TestApp::spawn_on(&a.database_url, options).await;
    // Users whose buckets land on different masters: each is counted once, via both.
    for user in ["alice", "bob", "carol"] {
        assert_eq!(
            crate::rate_limits::burst(&[&a, &b], user, 60).await,
            3,
            "{user} through two instances"
        );
    }
    a.stop().await;
    b.stop().await;
}
