//! Rate limits shared by every instance: one user's (or address's) burst is counted once in
//! Redis, however the requests are spread over instances; while Redis is down each instance
//! counts alone, and once it is back the count is shared again.
//!
//! The rates count over a minute here (`RATE_LIMIT_PERIOD_SECS`), so a bucket refills one
//! request in 20 s and no refill blurs a count taken in a few seconds; Redis gets 5 s to
//! answer, so a loaded machine does not fall back by itself.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::*;

/// A mutation that costs nothing: releasing a hold that does not exist (`NOT_FOUND`).
fn release_missing() -> Value {
    json!({"query": RELEASE_HOLD, "variables": {"h": uuid::Uuid::new_v4().to_string()}})
}

fn limited_options(redis: &str, user_rate: u32, address_rate: u32) -> Options {
    Options::default()
        .set("REDIS_URL", redis)
        .set("RATE_LIMIT_USER_PER_SEC", user_rate)
        .set("RATE_LIMIT_IP_PER_SEC", address_rate)
        .set("RATE_LIMIT_PERIOD_SECS", 60)
        .set("RATE_LIMIT_REDIS_TIMEOUT_MS", 5_000)
}

/// `count` releases by `user` at once, dealt round-robin over `apps`; returns how many got
/// through (`NOT_FOUND`) and checks every other one was `RETRY_LATER` with a wait.
pub async fn burst(apps: &[&TestApp], user: &str, count: usize) -> usize {
    let token = apps[0].token(user);
    let body = release_missing();
    let answers =
        join_all((0..count).map(|i| apps[i % apps.len()].post(Some(&token), &body))).await;
    let codes = tally(&answers);
    let through = codes.get("NOT_FOUND").copied().unwrap_or(0);
    let limited = codes.get("RETRY_LATER").copied().unwrap_or(0);
    assert_eq!(
        through + limited,
        count,
        "only these two answers: {codes:?}"
    );
    for (_, answer) in &answers {
        if error_code(answer).as_deref() == Some("RETRY_LATER") {
            let wait = answer["errors"][0]["extensions"]["retryAfterMs"]
                .as_u64()
                .unwrap_or(0);
            assert!(wait > 0, "a wait with every RETRY_LATER: {answer}");
        }
    }
    through
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_burst_lets_as_many_through_two_instances_as_through_one() {
    // 1 per second, so a burst of 3 (the limit's burst is three times its rate).
    let options = limited_options(&redis_url(), 1, 0);
    let a = TestApp::spawn_with(Backend::Postgres, options.clone()).await;
    let b = TestApp::spawn_on(&a.database_url, options).await;

    assert_eq!(burst(&[&a], "alice", 100).await, 3, "through one instance");
    assert_eq!(burst(&[&a, &b], "bob", 100).await, 3, "spread over two");
    // Alice's bucket is empty on B too: it is the same bucket.
    assert_eq!(burst(&[&b], "alice", 10).await, 0, "alice again, via B");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_addresss_limit_is_shared_by_two_instances() {
    let options = limited_options(&redis_url(), 0, 1);
    let a = TestApp::spawn_with(Backend::Postgres, options.clone()).await;
    let b = TestApp::spawn_on(&a.database_url, options).await;
    // Six different people from one address (127.0.0.1), alternating between instances.
    let mut codes = Vec::new();
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        let (_, answer) = app
            .post(Some(&app.token(&format!("person-{i}"))), &release_missing())
            .await;
        codes.push(error_code(&answer).unwrap_or_default());
    }
    assert_eq!(
        codes,
        [
            "NOT_FOUND",
            "NOT_FOUND",
            "NOT_FOUND",
            "RETRY_LATER",
            "RETRY_LATER",
            "RETRY_LATER"
        ]
    );
    a.stop().await;
    b.stop().await;
}

/// Whether `user`'s bucket is in Redis (the check was counted there, not on an instance).
async fn bucket_in_redis(redis: &str, namespace: &str, user: &str) -> bool {
    let client = redis::Client::open(redis).expect("redis url");
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    let key = format!("onsale:{namespace}:rate:user:{user}");
    redis::cmd("EXISTS")
        .arg(&key)
        .query_async::<bool>(&mut conn)
        .await
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_redis_is_down_each_instance_counts_alone_then_they_share_again() {
    let port = free_port();
    let mut redis = OwnRedis::start(port);
    let options = limited_options(&redis.url(), 1, 0);
    let a = TestApp::spawn_with(Backend::Postgres, options.clone()).await;
    let b = TestApp::spawn_on(&a.database_url, options).await;
    let namespace = redis_namespace(&a).await;
    assert_eq!(burst(&[&a, &b], "before", 40).await, 3, "shared while up");
    assert!(bucket_in_redis(&redis.url(), &namespace, "before").await);

    // Redis dies: the limit still holds, but per instance (3 on each).
    redis.kill();
    assert_eq!(
        burst(&[&a, &b], "during", 100).await,
        6,
        "each instance counts alone"
    );

    // Redis comes back (empty). Each instance asks it again within a few seconds; a probe
    // user's bucket appearing in Redis shows the instance counts there.
    let redis = OwnRedis::start(port);
    for (name, app) in [("a", &a), ("b", &b)] {
        let started = Instant::now();
        let mut probe = 0;
        loop {
            let user = format!("probe-{name}-{probe}");
            let (_, answer) = app.post(Some(&app.token(&user)), &release_missing()).await;
            assert_eq!(
                error_code(&answer).as_deref(),
                Some("NOT_FOUND"),
                "{answer}"
            );
            if bucket_in_redis(&redis.url(), &namespace, &user).await {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "instance {name} never counted in Redis again"
            );
            probe += 1;
            tokio::time::sleep(Duration::from_millis(200)).await; // polls until it recovers
        }
    }
    assert_eq!(burst(&[&a, &b], "after", 100).await, 3, "shared again");
    a.stop().await;
    b.stop().await;
}
