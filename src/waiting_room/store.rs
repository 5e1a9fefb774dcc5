//! Redis access for the waiting room: the key layout, the Lua scripts, and one wrapper that
//! bounds every call and turns any failure into "the waiting room is unavailable".
//!
//! Every key of one event's room shares a hash tag (`{<queue key>}`), so each script touches
//! one slot only. The queue key is random per event and kept in the database, so databases
//! sharing one Redis never mix their queues.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::{FromRedisValue, Script};

use crate::error::AppError;
use crate::redis_client::{RedisConn, RedisTarget};

/// Longest any waiting-room call to Redis may take. Generous: a slow answer under a burst
/// must not close the room; a Redis that is gone fails at once anyway (connection refused).
const REDIS_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a room look-up waits for the settings version: every hold makes one, so a stalled
/// Redis must not hold them up longer than it holds up the seat gate; past it, the database
/// is asked instead.
const VERSION_TIMEOUT: Duration = Duration::from_millis(500);
/// How long idle room state is kept in Redis after its last change.
pub const KEEP_MS: i64 = 7 * 24 * 3600 * 1000;
/// The pub/sub channel announcing new work and answered requests to every instance.
pub const NOTIFY_CHANNEL: &str = "onsale:wr:notify";
/// The set of `<event id>:<queue key>` that may have queued requests.
pub const QUEUES_KEY: &str = "onsale:wr:queues";
/// The consumer group of the request streams.
pub const GROUP: &str = "workers";

/// The key whose value changes with every room's settings, in a deployment's namespace
/// (see `config::RoomCache`).
pub fn settings_key(namespace: &str) -> String {
    format!("onsale:{namespace}:wr:settings")
}

/// The waiting room's own Redis connection (reconnecting by itself), so that its bursts and
/// its longer timeout are independent of the seat gate's.
pub async fn connect(target: &RedisTarget) -> Result<RedisConn, redis::RedisError> {
    crate::redis_client::connect(
        target,
        crate::redis_client::Timeouts {
            connect: Duration::from_secs(1),
            response: REDIS_TIMEOUT,
        },
    )
    .await
}

/// The Redis keys of one event's room.
#[derive(Clone, Debug)]
pub struct RoomKeys {
    prefix: String,
}

impl RoomKeys {
    pub fn new(queue_key: &str) -> Self {
        Self {
            prefix: format!("onsale:wr:{{{queue_key}}}"),
        }
    }

    /// Hash: `epoch`, `opened`, `opened_at`, `lobby_joined`, `tail`, `admitted`, `credit`,
    /// `last_ms`.
    pub fn meta(&self) -> String {
        format!("{}:meta", self.prefix)
    }
    /// Hash: user → current ticket (`L<n>` or `Q<n>`).
    pub fn tickets(&self) -> String {
        format!("{}:tickets", self.prefix)
    }
    /// Sorted set: early arrivals by the random number each drew when joining.
    pub fn lobby(&self) -> String {
        format!("{}:lobby", self.prefix)
    }
    /// Sorted set: admission steps, score = everyone up to this queue number is in, member =
    /// when (Redis time, ms).
    pub fn admits(&self) -> String {
        format!("{}:admits", self.prefix)
    }
    /// Stream of queued seat requests (consumer group [`GROUP`]).
    pub fn requests(&self) -> String {
        format!("{}:requests", self.prefix)
    }
    /// The worker lease: which instance works this event's requests.
    pub fn worker(&self) -> String {
        format!("{}:worker", self.prefix)
    }
    /// Counter: the worker lease's fencing token, one more each time the lease is taken.
    pub fn fence(&self) -> String {
        format!("{}:fence", self.prefix)
    }
    /// Counter of requests ever queued (their arrival numbers).
    pub fn request_seq(&self) -> String {
        format!("{}:reqseq", self.prefix)
    }
    /// Counter of requests ever answered (their answer numbers).
    pub fn answer_seq(&self) -> String {
        format!("{}:ansseq", self.prefix)
    }
    /// Hash: one seat request and, once answered, its outcome.
    pub fn request(&self, request_uuid: &str) -> String {
        format!("{}:req:{request_uuid}", self.prefix)
    }
    /// String: a client's idempotency key → the request it created.
    pub fn request_key(&self, user_id: &str, key: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(user_id.as_bytes());
        hash.update([0]);
        hash.update(key.as_bytes());
        format!("{}:reqkey:{}", self.prefix, hex::encode(hash.finalize()))
    }
}

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// KEYS: meta, tickets, lobby, admits. ARGV: user, random score, opens_at_ms, ttl_ms, keep_ms.
/// Returns the user's (possibly new) ticket state, see [`TicketState`].
static JOIN: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{PRELUDE}{}", include_str!("lua/join.lua"))));

/// KEYS: meta, lobby, admits. ARGV: user, ticket, the ticket's epoch. Returns
/// [`TicketState`], or nil if the ticket is of another epoch (issued before Redis lost the
/// room's state).
static STATUS: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{PRELUDE}{}", include_str!("lua/status.lua"))));

/// One pacing step, shared by all instances: credit accrues at `rate` per second of Redis
/// time since the last step (whoever ran it), and whole credits let people in. Credit is
/// never saved up: at most `max_dt_ms` counts per step, and unused whole credits lapse.
/// KEYS: meta, lobby, admits, tickets. ARGV: opens_at_ms, rate, max_dt_ms, keep_ms.
/// Returns [`RoomSnapshot`] fields: opened, admitted, tail, lobby_joined, admitted now, now,
/// epoch.
static PACE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{PRELUDE}{}", include_str!("lua/pace.lua"))));

/// Queues a seat request: its arrival number, the stream entry and the request record are
/// written together. With a client key seen before, returns the earlier request instead.
/// KEYS: stream, request hash, key map, arrival counter. ARGV: has key (0/1), request uuid,
/// user, admin (0/1), seats (comma separated), now, keep_ms, event id, notify channel,
/// `<event>:<queue key>`. Returns {1 = new | 0 = earlier, request uuid}.
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/enqueue.lua")));

/// Takes the worker lease of an event if it is free, with the next fencing token; makes sure
/// the consumer group exists, and takes over every entry a previous worker left pending
/// (delivered, never answered).
/// KEYS: lease, stream, fence. ARGV: owner, lease_ms, group, keep_ms.
/// Returns the lease's fencing token if taken, else 0.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/acquire.lua")));

/// The lease holder's next requests, up to a count, after the newest it has taken: the
/// entries pending with it (taken over, or not answered yet), then new ones, in stream
/// (arrival) order.
const NEXT_ENTRIES: &str = include_str!("lua/next_entry.lua");

/// Records the answers of requests, in queue order, each once, and only while holding the
/// lease with the newest fencing token (a worker that lost it leaves the entries to the new
/// holder); acknowledges and drops their stream entries; renews the lease and returns the
/// next requests (with no answers it only renews and takes).
/// KEYS: lease, stream, answer counter, fence, then the request hash of each answer.
/// ARGV: owner, group, now, keep_ms, notify channel, lease_ms, fencing token, count, after,
/// then six per answer: entry id, status, hold id, error code, error message, request id.
/// Returns {'lost'} (nothing was written), {'empty'} or {'entries', ...}.
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NEXT_ENTRIES}{}",
        include_str!("lua/complete.lua")
    ))
});

/// KEYS: lease. ARGV: owner, lease_ms. Returns 1 if still held (and renewed).
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/renew.lua")));

/// KEYS: lease. ARGV: owner. Lets the lease go if it is still ours.
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/release.lua")));

/// Raises the fencing counter to at least a token the database has seen (after Redis lost
/// the counter), so that the next taking of the lease draws a newer one.
/// KEYS: fence. ARGV: token, keep_ms.
static RAISE_FENCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/raise_fence.lua")));

/// Where one ticket stands, as Redis sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketState {
    /// `L<n>` (n-th arrival in the lobby) or `Q<n>` (queue number n).
    pub tk: String,
    /// The queue number; 0 while the lottery is not drawn yet.
    pub queue_number: i64,
    /// Everyone up to this queue number has been let in.
    pub admitted_upto: i64,
    /// When this ticket was let in (Redis time, ms); 0 if not yet.
    pub admitted_at_ms: i64,
    pub lobby_joined: i64,
    pub opened: bool,
    pub now_ms: i64,
    /// The last queue number handed out.
    pub tail: i64,
    /// The room's epoch (see `room_epoch` in `lua/prelude.lua`).
    pub epoch: i64,
}

/// The room as one pacing step left it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoomSnapshot {
    pub opened: bool,
    pub admitted_upto: i64,
    pub tail: i64,
    pub lobby_joined: i64,
    /// How many this step let in.
    pub let_in: i64,
    pub now_ms: i64,
    /// The room's epoch; 0 if it has none yet.
    pub epoch: i64,
}

/// What the worker got from [`Store::complete`].
#[derive(Debug)]
pub enum Next {
    Lost,
    Empty,
    /// In queue order.
    Entries(Vec<Entry>),
}

/// One request's stream entry.
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    pub fields: std::collections::HashMap<String, String>,
}

/// The answer to one request, as the worker records it.
pub struct Answer<'a> {
    pub entry_id: &'a str,
    pub request_uuid: &'a str,
    pub request_id: String,
    pub status: &'static str,
    pub hold_id: String,
    /// Code and message of a FAILED answer.
    pub error: Option<(&'static str, String)>,
}

/// The waiting room's Redis, with bounded calls and a health flag.
pub struct Store {
    conn: RedisConn,
    healthy: AtomicBool,
}

type Row9 = (String, i64, i64, i64, i64, i64, i64, i64, i64);
type PaceRow = (i64, i64, i64, i64, i64, i64, i64);
type MetaRow = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

impl Store {
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            healthy: AtomicBool::new(true),
        }
    }

    /// Whether the last call to Redis worked.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn unavailable() -> AppError {
        AppError::retry_later(
            1_000,
            "the waiting room is unavailable right now (its queue store cannot be reached); \
             nobody is let in meanwhile and places are kept: try again shortly",
        )
    }

    fn outcome<T>(
        &self,
        result: Result<Result<T, redis::RedisError>, tokio::time::error::Elapsed>,
    ) -> Result<T, AppError> {
        match result {
            Ok(Ok(value)) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("waiting room: Redis answers again");
                }
                Ok(value)
            }
            Ok(Err(err)) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %err, "waiting room: Redis failed; rooms fail closed until it is back");
                }
                Err(Self::unavailable())
            }
            Err(_) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        "waiting room: Redis timed out; rooms fail closed until it is back"
                    );
                }
                Err(Self::unavailable())
            }
        }
    }

    async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, AppError> {
        let mut call = script.prepare_invoke();
        for key in keys {
            call.key(key);
        }
        for arg in args {
            call.arg(arg);
        }
        let mut conn = self.conn.clone();
        let result = tokio::time::timeout(
            REDIS_TIMEOUT + Duration::from_millis(500),
            call.invoke_async::<T>(&mut conn),
        )
        .await;
        self.outcome(result)
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, AppError> {
        let mut conn = self.conn.clone();
        let result = tokio::time::timeout(
            REDIS_TIMEOUT + Duration::from_millis(500),
            cmd.query_async::<T>(&mut conn),
        )
        .await;
        self.outcome(result)
    }

    pub async fn join(
        &self,
        keys: &RoomKeys,
        user_id: &str,
        opens_at_ms: i64,
        ttl_ms: i64,
    ) -> Result<TicketState, AppError> {
        // 53 random bits: exact as a Redis score, so draws never round into ties.
        let draw = rand::random::<u64>() >> 11;
        let row: Row9 = self
            .eval(
                &JOIN,
                &[keys.meta(), keys.tickets(), keys.lobby(), keys.admits()],
                &[
                    user_id.to_owned(),
                    draw.to_string(),
                    opens_at_ms.to_string(),
                    ttl_ms.to_string(),
                    KEEP_MS.to_string(),
                ],
            )
            .await?;
        Ok(ticket_state(row))
    }

    /// Where a ticket stands; `None` if it is of another epoch than the room's (a ticket
    /// without one, `None`, is of none).
    pub async fn status(
        &self,
        keys: &RoomKeys,
        user_id: &str,
        tk: &str,
        epoch: Option<i64>,
    ) -> Result<Option<TicketState>, AppError> {
        let row: Option<Row9> = self
            .eval(
                &STATUS,
                &[keys.meta(), keys.lobby(), keys.admits()],
                &[
                    user_id.to_owned(),
                    tk.to_owned(),
                    epoch.map(|e| e.to_string()).unwrap_or_default(),
                ],
            )
            .await?;
        Ok(row.map(ticket_state))
    }

    /// The room's epoch; `None` if it has none (nothing was issued in this life of Redis).
    pub async fn epoch(&self, keys: &RoomKeys) -> Result<Option<i64>, AppError> {
        self.query(redis::cmd("HGET").arg(keys.meta()).arg("epoch").to_owned())
            .await
    }

    pub async fn pace(
        &self,
        keys: &RoomKeys,
        opens_at_ms: i64,
        rate: u32,
        max_dt_ms: i64,
    ) -> Result<RoomSnapshot, AppError> {
        let (opened, admitted_upto, tail, lobby_joined, let_in, now_ms, epoch): PaceRow = self
            .eval(
                &PACE,
                &[keys.meta(), keys.lobby(), keys.admits(), keys.tickets()],
                &[
                    opens_at_ms.to_string(),
                    rate.to_string(),
                    max_dt_ms.to_string(),
                    KEEP_MS.to_string(),
                ],
            )
            .await?;
        Ok(RoomSnapshot {
            opened: opened == 1,
            admitted_upto,
            tail,
            lobby_joined,
            let_in,
            now_ms,
            epoch,
        })
    }

    /// The current settings version at `key`; empty if none was ever announced (or Redis
    /// lost it).
    pub async fn settings_version(&self, key: &str) -> Result<String, AppError> {
        let mut conn = self.conn.clone();
        let result = tokio::time::timeout(
            VERSION_TIMEOUT,
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<String>>(&mut conn),
        )
        .await;
        Ok(self.outcome(result)?.unwrap_or_default())
    }

    /// Tells every instance that some room's settings changed: a new version at `key`, never
    /// one seen before (so a Redis that lost the key and counts again cannot repeat one).
    pub async fn announce_settings(&self, key: &str) -> Result<(), AppError> {
        let version = uuid::Uuid::new_v4().simple().to_string();
        self.query::<()>(redis::cmd("SET").arg(key).arg(version).to_owned())
            .await
    }

    /// Reads a room's counters without changing anything.
    pub async fn snapshot(&self, keys: &RoomKeys) -> Result<RoomSnapshot, AppError> {
        let (opened, admitted, tail, lobby_joined, epoch): MetaRow = self
            .query(
                redis::cmd("HMGET")
                    .arg(keys.meta())
                    .arg("opened")
                    .arg("admitted")
                    .arg("tail")
                    .arg("lobby_joined")
                    .arg("epoch")
                    .to_owned(),
            )
            .await?;
        Ok(RoomSnapshot {
            opened: opened == Some(1),
            admitted_upto: admitted.unwrap_or(0),
            tail: tail.unwrap_or(0),
            lobby_joined: lobby_joined.unwrap_or(0),
            let_in: 0,
            now_ms: crate::domain::clock::now_ms(),
            epoch: epoch.unwrap_or(0),
        })
    }

    /// Queues a request; returns whether it is new and its uuid.
    #[expect(clippy::too_many_arguments, reason = "one script, one argument each")]
    pub async fn enqueue(
        &self,
        keys: &RoomKeys,
        event_id: i64,
        queue_key: &str,
        request_uuid: &str,
        user: &crate::auth::User,
        seats: &str,
        client_key: Option<&str>,
        now_ms: i64,
    ) -> Result<(bool, String), AppError> {
        let key_map = match client_key {
            Some(key) => keys.request_key(&user.id, key),
            None => keys.request(request_uuid),
        };
        let (new, uuid): (i64, String) = self
            .eval(
                &ENQUEUE,
                &[
                    keys.requests(),
                    keys.request(request_uuid),
                    key_map,
                    keys.request_seq(),
                ],
                &[
                    if client_key.is_some() { "1" } else { "0" }.to_owned(),
                    request_uuid.to_owned(),
                    user.id.clone(),
                    if user.admin { "1" } else { "0" }.to_owned(),
                    seats.to_owned(),
                    now_ms.to_string(),
                    KEEP_MS.to_string(),
                    event_id.to_string(),
                    NOTIFY_CHANNEL.to_owned(),
                    format!("{event_id}:{queue_key}"),
                ],
            )
            .await?;
        Ok((new == 1, uuid))
    }

    /// Takes the worker lease if it is free; returns its fencing token.
    pub async fn acquire(
        &self,
        keys: &RoomKeys,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<i64>, AppError> {
        let token: i64 = self
            .eval(
                &ACQUIRE,
                &[keys.worker(), keys.requests(), keys.fence()],
                &[
                    owner.to_owned(),
                    lease_ms.to_string(),
                    GROUP.to_owned(),
                    KEEP_MS.to_string(),
                ],
            )
            .await?;
        Ok((token > 0).then_some(token))
    }

    /// Makes sure the next fencing token is newer than `seen`.
    pub async fn raise_fence(&self, keys: &RoomKeys, seen: i64) -> Result<(), AppError> {
        let _: i64 = self
            .eval(
                &RAISE_FENCE,
                &[keys.fence()],
                &[seen.to_string(), KEEP_MS.to_string()],
            )
            .await?;
        Ok(())
    }

    pub async fn renew(
        &self,
        keys: &RoomKeys,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool, AppError> {
        let held: i64 = self
            .eval(
                &RENEW,
                &[keys.worker()],
                &[owner.to_owned(), lease_ms.to_string()],
            )
            .await?;
        Ok(held == 1)
    }

    pub async fn release(&self, keys: &RoomKeys, owner: &str) -> Result<(), AppError> {
        let _: i64 = self
            .eval(&RELEASE, &[keys.worker()], &[owner.to_owned()])
            .await?;
        Ok(())
    }

    /// Records `answers` (in queue order, possibly none), renews the lease and returns up to
    /// `count` next requests after entry `after` (`0`: from the first); [`Next::Lost`] if the
    /// lease was lost meanwhile, or taken again with a newer token than `token` (then nothing
    /// was written).
    pub async fn complete(
        &self,
        keys: &RoomKeys,
        (owner, token): (&str, i64),
        lease_ms: i64,
        answers: &[Answer<'_>],
        (count, after): (usize, &str),
    ) -> Result<Next, AppError> {
        let mut script_keys = vec![
            keys.worker(),
            keys.requests(),
            keys.answer_seq(),
            keys.fence(),
        ];
        let mut args = vec![
            owner.to_owned(),
            GROUP.to_owned(),
            crate::domain::clock::now_ms().to_string(),
            KEEP_MS.to_string(),
            NOTIFY_CHANNEL.to_owned(),
            lease_ms.to_string(),
            token.to_string(),
            count.to_string(),
            after.to_owned(),
        ];
        for answer in answers {
            script_keys.push(keys.request(answer.request_uuid));
            let (code, message) = answer.error.as_ref().map_or(("", ""), |(c, m)| (*c, m));
            args.extend([
                answer.entry_id.to_owned(),
                answer.status.to_owned(),
                answer.hold_id.clone(),
                code.to_owned(),
                message.to_owned(),
                answer.request_id.clone(),
            ]);
        }
        let reply: Vec<Option<String>> = self.eval(&COMPLETE, &script_keys, &args).await?;
        Ok(parse_next(reply))
    }
}

fn parse_next(reply: Vec<Option<String>>) -> Next {
    let mut items = reply.into_iter().map(Option::unwrap_or_default);
    match items.next().as_deref() {
        Some("entries") => {
            let mut entries = Vec::new();
            while let Some(id) = items.next() {
                let n: usize = items.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let mut fields = std::collections::HashMap::new();
                for _ in 0..n / 2 {
                    if let (Some(k), Some(v)) = (items.next(), items.next()) {
                        fields.insert(k, v);
                    }
                }
                entries.push(Entry { id, fields });
            }
            Next::Entries(entries)
        }
        Some("empty") => Next::Empty,
        _ => Next::Lost,
    }
}

fn ticket_state(row: Row9) -> TicketState {
    let (
        tk,
        queue_number,
        admitted_upto,
        admitted_at_ms,
        lobby_joined,
        opened,
        now_ms,
        tail,
        epoch,
    ) = row;
    TicketState {
        tk,
        queue_number,
        admitted_upto,
        admitted_at_ms,
        lobby_joined,
        opened: opened == 1,
        now_ms,
        tail,
        epoch,
    }
}
