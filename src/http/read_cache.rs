//! Seat maps from memory, as bytes. A `seatMap` query's answer is serialised once per
//! (query, variables, viewer, event state) and the same bytes — and their gzip and brotli
//! forms, each compressed once — go to every reader until the event changes.
//!
//! Freshness: every read first loads the event's row (one primary-key read) and its areas'
//! versions, and serves the stored answer only if it was built from exactly that state (same
//! `seq`, so no seat change committed since; the same settings; no area count moved) and the clock has not reached the first instant at
//! which the answer would read differently by itself (a shown hold running out, a sales
//! window opening: [`CacheHint`]). An answer is stored only if the event's row was the same
//! before and after it was built, so it shows that `seq` exactly. So a reader never gets a
//! map older than a change committed before its read began, whichever instance made it.
//!
//! Only documents whose one root field is `seatMap` (besides `__typename`) are cached; the
//! plan for a query text — its kind and parsed document, for every operation — is worked
//! out once.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection,
};
use async_graphql::{Request, ServerError, Value};
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use lru::LruCache;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::booking::events::MapState;
use crate::graphql::cache_hint::CacheHint;
use crate::graphql::limits;

/// Query texts whose plan is kept.
const PLANS: NonZeroUsize = NonZeroUsize::new(1_024).expect("non-zero");
/// Longer query texts are not kept (what the plans may hold stays bounded).
const MAX_PLANNED_TEXT: usize = 16 * 1024;
/// Answers kept (each one event's map for one query and viewer).
const ANSWERS: NonZeroUsize = NonZeroUsize::new(512).expect("non-zero");
/// Most plain bytes all stored answers may take (a 10,000-seat map is about 1 MiB).
const MAX_ANSWER_BYTES: usize = 256 << 20;
/// Brotli quality for stored answers: compressed once per change, read many times.
const BROTLI_QUALITY: u32 = 5;

/// What kind of operation a request runs, as far as caching and `GET` care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A query whose only root field is `seatMap`: the event id comes from here.
    SeatMap(EventArg),
    /// Any other query.
    Query,
    /// A mutation or subscription (never over `GET`).
    Write,
    /// Not parseable, or no such operation: execution gives the error.
    Unknown,
}

/// Where `seatMap(eventId:)` takes its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventArg {
    Literal(String),
    Variable(String),
}

impl EventArg {
    /// The event id of `request`, if it is a plain number.
    pub fn event_id(&self, request: &Request) -> Option<i64> {
        let value = match self {
            EventArg::Literal(id) => id.clone(),
            EventArg::Variable(name) => match request.variables.get(name.as_str())? {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            },
        };
        value.parse().ok()
    }
}

/// The document's kind; a parsed document is left in the request for execution.
fn classify(request: &mut Request) -> Kind {
    let operation_name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return Kind::Unknown;
    };
    classify_document(doc, operation_name.as_deref())
}

fn classify_document(doc: &ExecutableDocument, operation_name: Option<&str>) -> Kind {
    let operation = match (&doc.operations, operation_name) {
        (DocumentOperations::Single(op), _) => &op.node,
        (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
            Some(op) => &op.node,
            None => return Kind::Unknown,
        },
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => match ops.values().next() {
            Some(op) => &op.node,
            None => return Kind::Unknown,
        },
        _ => return Kind::Unknown,
    };
    if operation.ty != OperationType::Query {
        return Kind::Write;
    }
    if !operation.directives.is_empty() {
        return Kind::Query;
    }
    let mut seat_map = None;
    for item in &operation.selection_set.node.items {
        let Selection::Field(field) = &item.node else {
            return Kind::Query;
        };
        let field = &field.node;
        if !field.directives.is_empty() {
            return Kind::Query;
        }
        match field.name.node.as_str() {
            "__typename" => {}
            "seatMap" if seat_map.is_none() => seat_map = Some(field),
            _ => return Kind::Query,
        }
    }
    let Some(field) = seat_map else {
        return Kind::Query;
    };
    let event = field
        .arguments
        .iter()
        .find(|(name, _)| name.node.as_str() == "eventId")
        .and_then(|(_, value)| {
            // A variable makes `into_const_with` stop with its name.
            match value.node.clone().into_const_with(Err::<Value, _>) {
                Ok(Value::String(s)) => Some(EventArg::Literal(s)),
                Ok(Value::Number(n)) => Some(EventArg::Literal(n.to_string())),
                Ok(_) => None,
                Err(variable) => Some(EventArg::Variable(variable.to_string())),
            }
        });
    event.map_or(Kind::Query, Kind::SeatMap)
}

/// What is known about one query text.
#[derive(Clone)]
struct Plan {
    kind: Kind,
    document: Arc<ExecutableDocument>,
}

/// One stored answer.
pub struct Answer {
    /// The event's state it was built from.
    event: MapState,
    /// It reads differently by itself from this instant (Unix ms) on.
    valid_until_ms: i64,
    body: Bytes,
    etag: HeaderValue,
    gzip: OnceCell<Bytes>,
    br: OnceCell<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    query: String,
    operation: Option<String>,
    variables: String,
    admin: bool,
    event_id: i64,
}

/// Plans by query text and answers by key; cheap to clone.
#[derive(Clone)]
pub struct ReadCache {
    plans: Arc<Mutex<LruCache<String, Plan>>>,
    answers: Arc<Mutex<Answers>>,
    /// One build at a time per key: readers that miss together wait for the first one's
    /// answer instead of each building the same map.
    flights: Arc<Mutex<HashMap<Key, Arc<FlightState>>>>,
    /// `SEATMAP_CACHE=off`: every answer is built (plans are still kept).
    answers_on: bool,
}

impl ReadCache {
    pub fn new(answers_on: bool) -> Self {
        Self {
            plans: Arc::new(Mutex::new(LruCache::new(PLANS))),
            answers: Arc::new(Mutex::new(Answers {
                lru: LruCache::new(ANSWERS),
                bytes: 0,
            })),
            flights: Arc::default(),
            answers_on,
        }
    }
}

/// Stored answers, least recently used dropped first, by count and by bytes.
struct Answers {
    lru: LruCache<Key, Arc<Answer>>,
    /// Plain bytes of every stored answer (compressed forms are a fraction more).
    bytes: usize,
}

/// A cacheable request, ready to look up.
pub struct Lookup {
    key: Key,
    pub event_id: i64,
}

impl ReadCache {
    /// The request's kind, worked out once per query text. A text seen before also brings
    /// its parsed document along (parsing is most of what a small request costs); a new one
    /// is first measured by [`limits::check`], so nothing recursive runs on a hostile text.
    pub fn kind(&self, request: &mut Request) -> Result<Kind, ServerError> {
        let known = self
            .plans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&request.query)
            .cloned();
        if let Some(plan) = known {
            request.set_parsed_query(plan.document.as_ref().clone());
            return Ok(plan.kind);
        }
        limits::check(request)?;
        let kind = classify(request);
        if kind != Kind::Unknown
            && request.query.len() <= MAX_PLANNED_TEXT
            && let Ok(document) = request.parsed_query()
        {
            let plan = Plan {
                kind: kind.clone(),
                document: Arc::new(document.clone()),
            };
            self.plans
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .put(request.query.clone(), plan);
        }
        Ok(kind)
    }

    /// The key of a `seatMap` request, if its answer can be shared (`admin`: the caller is
    /// an admin, who sees more than everyone else).
    pub fn lookup(&self, request: &Request, arg: &EventArg, admin: bool) -> Option<Lookup> {
        if !self.answers_on {
            return None;
        }
        let event_id = arg.event_id(request)?;
        let variables = serde_json::to_string(&request.variables).ok()?;
        Some(Lookup {
            key: Key {
                query: request.query.clone(),
                operation: request.operation_name.clone(),
                variables,
                admin,
                event_id,
            },
            event_id,
        })
    }

    /// The stored answer for `lookup`, if it was built from `event` and is still true at `now`.
    pub fn get(&self, lookup: &Lookup, event: &MapState, now: i64) -> Option<Arc<Answer>> {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        let answer = answers.lru.get(&lookup.key)?;
        (answer.event == *event && now < answer.valid_until_ms).then(|| Arc::clone(answer))
    }

    /// An answer of `body`, built from `event`, true until `hint` says, not stored.
    pub fn answer(event: MapState, hint: &CacheHint, body: Bytes) -> Arc<Answer> {
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
        Arc::new(Answer {
            event,
            valid_until_ms: hint.valid_until(),
            etag: HeaderValue::try_from(etag).unwrap_or(HeaderValue::from_static("\"\"")),
            body,
            gzip: OnceCell::new(),
            br: OnceCell::new(),
        })
    }

    /// Stores `answer` for `lookup`.
    pub fn put(&self, lookup: Lookup, answer: Arc<Answer>) {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers.bytes += answer.body.len();
        if let Some((_, old)) = answers.lru.push(lookup.key, Arc::clone(&answer)) {
            answers.bytes -= old.body.len();
        }
        while answers.bytes > MAX_ANSWER_BYTES && answers.lru.len() > 1 {
            match answers.lru.pop_lru() {
                Some((_, old)) => answers.bytes -= old.body.len(),
                None => break,
            }
        }
        drop(answers);
    }
}

/// The builds of one key: one at a time, and the latest, for the readers that waited.
#[derive(Default)]
pub struct FlightState {
    lock: Arc<tokio::sync::Mutex<()>>,
    latest: Mutex<Option<Built>>,
    /// Woken when a build is published, so that the readers it serves need not take the
    /// lock in turn to find it.
    published: tokio::sync::Notify,
}

/// An answer a reader built, and when it read the event's state before building: the map
/// shows every change committed before then.
struct Built {
    read_at: Instant,
    answer: Arc<Answer>,
}

/// The right to build one key's answer; see [`ReadCache::flight`].
pub struct Flight {
    key: Key,
    state: Arc<FlightState>,
    flights: Arc<Mutex<HashMap<Key, Arc<FlightState>>>>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Flight {
    /// The latest answer built for this key from a state read no earlier than `began`: it
    /// shows every change committed before a read that began then. (A build whose event
    /// changed meanwhile is not stored, yet it serves the readers that were already waiting,
    /// instead of each of them building in turn.)
    pub fn built_since(&self, began: Instant) -> Option<Arc<Answer>> {
        let latest = self
            .state
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        latest
            .as_ref()
            .filter(|built| built.read_at >= began)
            .map(|built| Arc::clone(&built.answer))
    }

    /// Makes `answer`, built from the state read at `read_at`, the latest of this key.
    pub fn built(&self, read_at: Instant, answer: &Arc<Answer>) {
        let mut latest = self
            .state
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if latest.as_ref().is_none_or(|built| built.read_at <= read_at) {
            *latest = Some(Built {
                read_at,
                answer: Arc::clone(answer),
            });
        }
        drop(latest);
        self.state.published.notify_waiters();
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self._guard = None;
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        // Nobody else waits (the map's and our own handle are all there is): forget it.
        if Arc::strong_count(&self.state) <= 2 {
            flights.remove(&self.key);
        }
    }
}

impl ReadCache {
    /// Waits, until the instant `patience` at most, until no other request is building
    /// `lookup`'s answer, then holds that right until dropped; or, sooner, until a build is
    /// published: [`Flown::Shared`] if it serves a request that `began` then
    /// ([`Flight::built_since`]), else [`Flown::Recheck`]. Check [`ReadCache::get`] again
    /// after [`Flown::Build`]: the one before may have stored what this request needs.
    pub async fn flight(&self, lookup: &Lookup, patience: Instant, began: Instant) -> Flown {
        let state = self
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(lookup.key.clone())
            .or_default()
            .clone();
        let mut flight = Flight {
            key: lookup.key.clone(),
            state: Arc::clone(&state),
            flights: Arc::clone(&self.flights),
            _guard: None,
        };
        let deadline = tokio::time::Instant::from_std(patience);
        let mut lock = std::pin::pin!(Arc::clone(&state.lock).lock_owned());
        let published = state.published.notified();
        let mut published = std::pin::pin!(published);
        published.as_mut().enable();
        if let Some(answer) = flight.built_since(began) {
            return Flown::Shared(answer);
        }
        tokio::select! {
            guard = &mut lock => {
                flight._guard = Some(guard);
                Flown::Build(flight)
            }
            // Built from a state read before this request began, it may be stored and
            // still true, which only the store can tell.
            () = published => flight.built_since(began).map_or(Flown::Recheck, Flown::Shared),
            () = tokio::time::sleep_until(deadline) => Flown::Build(flight),
        }
    }
}

/// What waiting for a key's build came to.
pub enum Flown {
    /// A build that shows every change committed before the request began.
    Shared(Arc<Answer>),
    /// This request builds (holding the right to, unless its patience ran out).
    Build(Flight),
    /// A build was published that began before this request did: look in the store again
    /// (without waiting for the lock in turn), then wait again if it is not there.
    Recheck,
}

/// A content coding the client accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Brotli,
    Gzip,
    Identity,
}

impl Coding {
    /// The best coding `Accept-Encoding` allows (brotli, then gzip; `q=0` refuses one).
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let accepted = |name: &str| {
            headers
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|item| {
                    let mut parts = item.split(';');
                    let coding = parts.next().unwrap_or("").trim();
                    let refused = parts.any(|p| {
                        p.trim()
                            .strip_prefix("q=")
                            .and_then(|q| q.trim().parse::<f32>().ok())
                            .is_some_and(|q| q <= 0.0)
                    });
                    coding.eq_ignore_ascii_case(name) && !refused
                })
        };
        if accepted("br") {
            Coding::Brotli
        } else if accepted("gzip") {
            Coding::Gzip
        } else {
            Coding::Identity
        }
    }

    /// The `Content-Encoding` value, if any.
    pub fn header(self) -> Option<HeaderValue> {
        match self {
            Coding::Brotli => Some(HeaderValue::from_static("br")),
            Coding::Gzip => Some(HeaderValue::from_static("gzip")),
            Coding::Identity => None,
        }
    }
}

impl Answer {
    pub fn etag(&self) -> &HeaderValue {
        &self.etag
    }

    /// Whether `If-None-Match` names this answer.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let Ok(ours) = self.etag.to_str() else {
            return false;
        };
        headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == ours)
    }

    /// The body in `coding`, compressed on first use (off the async threads).
    pub async fn body(&self, coding: Coding) -> Bytes {
        let cell = match coding {
            Coding::Identity => return self.body.clone(),
            Coding::Gzip => &self.gzip,
            Coding::Brotli => &self.br,
        };
        let plain = self.body.clone();
        cell.get_or_init(|| async move {
            let compressed = tokio::task::spawn_blocking(move || compress(&plain, coding)).await;
            compressed.ok().flatten().unwrap_or_default()
        })
        .await
        .clone()
    }
}

fn compress(plain: &[u8], coding: Coding) -> Option<Bytes> {
    use std::io::Write;
    let out = match coding {
        Coding::Identity => return Some(Bytes::copy_from_slice(plain)),
        Coding::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(plain).ok()?;
            encoder.finish().ok()?
        }
        Coding::Brotli => {
            let mut out = Vec::new();
            {
                let mut writer =
                    brotli::CompressorWriter::new(&mut out, 64 * 1024, BROTLI_QUALITY, 22);
                writer.write_all(plain).ok()?;
            }
            out
        }
    };
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(query: &str, operation: Option<&str>) -> Kind {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        classify_document(&doc, operation)
    }

    #[test]
    fn only_a_lone_seat_map_is_cached() {
        assert_eq!(
            kind("query($e: ID!) { seatMap(eventId: $e) { seq } }", None),
            Kind::SeatMap(EventArg::Variable("e".into()))
        );
        assert_eq!(
            kind(
                "{ __typename m: seatMap(eventId: \"7\") { seats { id } } }",
                None
            ),
            Kind::SeatMap(EventArg::Literal("7".into()))
        );
        assert_eq!(
            kind("{ seatMap(eventId: 1) { seq } events { id } }", None),
            Kind::Query
        );
        assert_eq!(
            kind(
                "{ a: seatMap(eventId: 1) { seq } b: seatMap(eventId: 2) { seq } }",
                None
            ),
            Kind::Query
        );
        assert_eq!(
            kind(
                "query($s: Boolean!) { seatMap(eventId: 1) @include(if: $s) { seq } }",
                None
            ),
            Kind::Query
        );
        assert_eq!(
            kind("{ ... on Query { seatMap(eventId: 1) { seq } } }", None),
            Kind::Query
        );
        assert_eq!(
            kind("mutation { releaseHold(holdId: \"x\") }", None),
            Kind::Write
        );
        assert_eq!(
            kind("subscription { seatChanges(eventId: 1) { seq } }", None),
            Kind::Write
        );
        assert_eq!(
            kind("query A { events { id } } mutation B { x }", Some("B")),
            Kind::Write
        );
        assert_eq!(
            kind("query A { events { id } } query B { x }", None),
            Kind::Unknown
        );
    }

    #[test]
    fn accept_encoding_prefers_brotli_and_honours_q_zero() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            Coding::negotiate(&h)
        };
        assert_eq!(with("gzip, deflate, br, zstd"), Coding::Brotli);
        assert_eq!(with("gzip"), Coding::Gzip);
        assert_eq!(with("br;q=0, gzip;q=0.5"), Coding::Gzip);
        assert_eq!(with("identity"), Coding::Identity);
        assert_eq!(Coding::negotiate(&HeaderMap::new()), Coding::Identity);
    }

    #[test]
    fn compressed_forms_decompress_to_the_body() {
        use std::io::Read;
        let plain = br#"{"data":{"seatMap":{"seq":1}}}"#.repeat(100);
        let gz = compress(&plain, Coding::Gzip).expect("gzip");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, plain);
        let br = compress(&plain, Coding::Brotli).expect("br");
        let mut back = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut back)
            .expect("unbrotli");
        assert_eq!(back, plain);
    }
}
