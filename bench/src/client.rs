//! GraphQL over HTTP: sending one request, timing it, and classifying its answer by the
//! contract's `extensions.code` (or a transport-level label when there is no GraphQL answer).

use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use serde_json::{Value, json};
use sha2::Digest as _;

/// The label of a successful answer.
pub const OK: &str = "OK";
/// No answer at all: connection refused or reset, request not sent, body not read.
pub const TRANSPORT: &str = "TRANSPORT";
/// No answer within the client's timeout.
pub const TIMEOUT: &str = "TIMEOUT";
/// HTTP 200 whose body is not a GraphQL response.
pub const BAD_RESPONSE: &str = "BAD_RESPONSE";
/// A GraphQL error without `extensions.code` (the contract says every error has one).
pub const NO_CODE: &str = "NO_CODE";

/// Whether an answer with this code means the server (or the network) failed, as opposed to
/// a clean refusal the contract allows.
pub fn is_failure(code: &str) -> bool {
    matches!(
        code,
        "INTERNAL" | TRANSPORT | TIMEOUT | BAD_RESPONSE | NO_CODE
    ) || code.starts_with("HTTP_5")
}

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `OK`, the first error's `extensions.code`, `HTTP_<status>`, or a transport label.
    pub code: String,
    /// From just before sending to the whole body read.
    pub latency: Duration,
    /// When the whole body had been read.
    pub received_at: Instant,
    /// The response's `data` (`Null` on error, or when the body was not parsed).
    pub data: Value,
    /// The first error's message or the transport error, for diagnostics.
    pub message: Option<String>,
    /// `extensions.retryAfterMs` of a `RETRY_LATER` answer.
    pub retry_after: Option<Duration>,
}

impl Answer {
    pub fn is_ok(&self) -> bool {
        self.code == OK
    }

    fn transport(code: &str, message: String, started: Instant) -> Self {
        let now = Instant::now();
        Self {
            code: code.to_owned(),
            latency: now - started,
            received_at: now,
            data: Value::Null,
            message: Some(message),
            retry_after: None,
        }
    }
}

/// Whether to parse successful bodies (large seat maps are expensive to parse, and readers
/// only need the outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    Full,
    ErrorsOnly,
}

/// How a reader asks for a seat map (see [`Api::read`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadForm {
    /// `POST /graphql`, uncompressed.
    Post,
    /// `POST /graphql` with `Accept-Encoding: gzip`.
    PostGzip,
    /// `GET /graphql` with a persisted-query hash, gzip, and `If-None-Match`.
    GetEtag,
}

/// One seat-map read by [`Api::read`].
#[derive(Debug)]
pub struct MapRead {
    pub answer: Answer,
    /// The answer's `ETag`, or the one sent when the answer was a `304`.
    pub etag: Option<String>,
    /// The map's `seq`; `None` for a `304` (the reader's copy is current) or an answer
    /// without a readable one.
    pub seq: Option<u64>,
    /// The answer was a `304 Not Modified`.
    pub not_modified: bool,
}

impl MapRead {
    fn failed(answer: Answer) -> Self {
        Self {
            answer,
            etag: None,
            seq: None,
            not_modified: false,
        }
    }
}

/// How much of a seat-map answer is inflated and searched for its `seq`: the prefix below and
/// any `Int` fit in it.
const HEAD: usize = 64;

/// The `seq` of a seat-map answer from its first bytes. The bench's seat-map queries ask for
/// `seq` first and the server writes compact JSON, so a map starts
/// `{"data":{"seatMap":{"seq":<n>,`; `None` when the head is anything else or ends inside
/// the number.
pub fn seq_from_head(head: &[u8]) -> Option<u64> {
    let rest = head.strip_prefix(b"{\"data\":{\"seatMap\":{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits == rest.len() {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// A cheap-to-clone handle on the server's HTTP API.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    graphql: String,
}

impl Api {
    /// A client that keeps one connection per concurrent request, so N concurrent requests
    /// are N real parallel connections.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        // Needed when cargo unified reqwest's features with the server's TLS setup; an
        // already installed provider is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = base.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(100_000)
            .pool_idle_timeout(Duration::from_secs(120))
            .tcp_nodelay(true)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            graphql: format!("{base}/graphql"),
            base,
            http,
        })
    }

    /// The same client (its connection pool and settings) for another server.
    pub fn at(&self, base: &str) -> Self {
        let base = base.trim_end_matches('/').to_owned();
        Self {
            http: self.http.clone(),
            graphql: format!("{base}/graphql"),
            base,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `ws://…/graphql/ws` for the same server.
    pub fn ws_url(&self) -> String {
        let ws = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base.clone()
        };
        format!("{ws}/graphql/ws")
    }

    /// `GET /healthz`; used to open a connection ahead of a burst.
    pub async fn healthz(&self) -> anyhow::Result<()> {
        let resp = self
            .http
            .get(format!("{}/healthz", self.base))
            .send()
            .await
            .context("GET /healthz")?;
        resp.error_for_status().context("GET /healthz")?;
        Ok(())
    }

    /// Sends one GraphQL operation and classifies the answer. Never fails: a network problem
    /// is an answer too (`TRANSPORT`, `TIMEOUT`, `HTTP_<status>`).
    pub async fn call(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
        parse: Parse,
    ) -> Answer {
        self.call_with_headers(token, &[], query, variables, parse)
            .await
    }

    /// [`Api::call`] with extra HTTP headers (e.g. `x-admission-token`).
    pub async fn call_with_headers(
        &self,
        token: Option<&str>,
        headers: &[(&str, &str)],
        query: &str,
        variables: Value,
        parse: Parse,
    ) -> Answer {
        let started = Instant::now();
        let mut req = self
            .http
            .post(&self.graphql)
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => return Answer::transport(transport_code(&e), e.to_string(), started),
        };
        let status = resp.status().as_u16();
        let body = match resp.bytes().await {
            Ok(body) => body,
            Err(e) => return Answer::transport(transport_code(&e), e.to_string(), started),
        };
        let received_at = Instant::now();
        let mut answer = classify(status, &body, parse);
        answer.latency = received_at - started;
        answer.received_at = received_at;
        answer
    }

    /// A seat-map style read in one of the forms a browser or CDN uses: `POST` asking for
    /// gzip, or `GET` with the persisted query's hash (Apollo APQ) and the last `ETag` seen
    /// (`304` counts as OK: the client's copy is current). Returns the answer, the answer's
    /// `ETag` and the map's `seq` (read from the head of the body, see [`seq_from_head`]).
    /// Compressed bodies are decompressed only as far as needed to classify them.
    pub async fn read(
        &self,
        form: ReadForm,
        query: &str,
        variables: &Value,
        etag: Option<&str>,
    ) -> MapRead {
        let started = Instant::now();
        let req = match form {
            ReadForm::Post => self
                .http
                .post(&self.graphql)
                .json(&json!({"query": query, "variables": variables})),
            ReadForm::PostGzip => self
                .http
                .post(&self.graphql)
                .header("accept-encoding", "gzip")
                .json(&json!({"query": query, "variables": variables})),
            ReadForm::GetEtag => {
                let hash = hex::encode(sha2::Sha256::digest(query.as_bytes()));
                let extensions = json!({"persistedQuery": {"version": 1, "sha256Hash": hash}});
                let mut params = vec![
                    ("variables", variables.to_string()),
                    ("extensions", extensions.to_string()),
                ];
                // The text goes along only until the server knows the hash.
                if etag.is_none() {
                    params.push(("query", query.to_owned()));
                }
                let url = match reqwest::Url::parse_with_params(&self.graphql, &params) {
                    Ok(url) => url,
                    Err(e) => {
                        return MapRead::failed(Answer::transport(
                            TRANSPORT,
                            e.to_string(),
                            started,
                        ));
                    }
                };
                let mut req = self.http.get(url).header("accept-encoding", "gzip");
                if let Some(etag) = etag {
                    req = req.header("if-none-match", etag);
                }
                req
            }
        };
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                return MapRead::failed(Answer::transport(
                    transport_code(&e),
                    e.to_string(),
                    started,
                ));
            }
        };
        let status = resp.status().as_u16();
        let new_etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let gzipped = resp
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v.as_bytes() == b"gzip");
        let body = match resp.bytes().await {
            Ok(body) => body,
            Err(e) => {
                return MapRead::failed(Answer::transport(
                    transport_code(&e),
                    e.to_string(),
                    started,
                ));
            }
        };
        let received_at = Instant::now();
        let (mut answer, seq) = if status == 304 {
            (classify(200, b"{\"data\":{}}", Parse::ErrorsOnly), None)
        } else if gzipped {
            // Only the start is decompressed: it tells data from errors (a stored seat map
            // starts `{"data":{`, an error answer does not) and carries the `seq`, and
            // inflating the whole map would make the load generator, not the server, the
            // bottleneck.
            use std::io::Read;
            let mut head = Vec::with_capacity(HEAD);
            let mut decoder = flate2::read::GzDecoder::new(&body[..]);
            match decoder.by_ref().take(HEAD as u64).read_to_end(&mut head) {
                Ok(_) if head.starts_with(b"{\"data\":{") => (
                    classify(200, b"{\"data\":{}}", Parse::ErrorsOnly),
                    seq_from_head(&head),
                ),
                Ok(_) => {
                    let mut plain = Vec::new();
                    match flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain) {
                        Ok(_) => (classify(status, &plain, Parse::ErrorsOnly), None),
                        Err(e) => (
                            Answer::transport(BAD_RESPONSE, e.to_string(), started),
                            None,
                        ),
                    }
                }
                Err(e) => (
                    Answer::transport(BAD_RESPONSE, e.to_string(), started),
                    None,
                ),
            }
        } else {
            (
                classify(status, &body, Parse::ErrorsOnly),
                seq_from_head(&body[..body.len().min(HEAD)]),
            )
        };
        answer.latency = received_at - started;
        answer.received_at = received_at;
        MapRead {
            // An error answer carries no map, so no seq.
            seq: seq.filter(|_| answer.is_ok()),
            answer,
            etag: new_etag.or_else(|| etag.map(str::to_owned)),
            not_modified: status == 304,
        }
    }

    /// Runs an operation that must succeed (setup and verification) and returns its `data`.
    pub async fn expect(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let answer = self.call(token, query, variables, Parse::Full).await;
        if answer.is_ok() {
            Ok(answer.data)
        } else {
            let name = query.split(['(', '{']).next().unwrap_or(query).trim();
            Err(anyhow!(
                "{name} failed with {}: {}",
                answer.code,
                answer.message.unwrap_or_default()
            ))
        }
    }
}

fn transport_code(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() { TIMEOUT } else { TRANSPORT }
}

/// Classifies a received body. With [`Parse::ErrorsOnly`], a 200 body that starts as data and
/// mentions no `"errors"` key is taken as `OK` without parsing it.
fn classify(status: u16, body: &[u8], parse: Parse) -> Answer {
    let mut answer = Answer {
        code: OK.to_owned(),
        latency: Duration::ZERO,
        received_at: Instant::now(),
        data: Value::Null,
        message: None,
        retry_after: None,
    };
    if status != 200 {
        answer.code = format!("HTTP_{status}");
        answer.message = Some(String::from_utf8_lossy(body).chars().take(200).collect());
        return answer;
    }
    if parse == Parse::ErrorsOnly
        && let Ok(text) = std::str::from_utf8(body)
        && text.starts_with("{\"data\":{")
        && !text.contains("\"errors\"")
    {
        return answer;
    }
    let Ok(mut json) = serde_json::from_slice::<Value>(body) else {
        answer.code = BAD_RESPONSE.to_owned();
        answer.message = Some(String::from_utf8_lossy(body).chars().take(200).collect());
        return answer;
    };
    if let Some(first) = json.get("errors").and_then(|e| e.get(0)) {
        let extensions = &first["extensions"];
        answer.code = extensions["code"].as_str().unwrap_or(NO_CODE).to_owned();
        answer.message = first["message"].as_str().map(str::to_owned);
        answer.retry_after = extensions["retryAfterMs"]
            .as_u64()
            .map(Duration::from_millis);
        return answer;
    }
    match json.get_mut("data") {
        Some(data) if !data.is_null() => answer.data = data.take(),
        _ => {
            answer.code = BAD_RESPONSE.to_owned();
            answer.message = Some("neither data nor errors".to_owned());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_answers() {
        let ok = classify(200, br#"{"data":{"x":1}}"#, Parse::Full);
        assert_eq!(ok.code, OK);
        assert_eq!(ok.data["x"], 1);
        let light = classify(200, br#"{"data":{"x":1}}"#, Parse::ErrorsOnly);
        assert_eq!(light.code, OK);
        assert!(light.data.is_null());
        let err = classify(
            200,
            br#"{"data":null,"errors":[{"message":"busy","extensions":{"code":"RETRY_LATER","retryAfterMs":150}}]}"#,
            Parse::ErrorsOnly,
        );
        assert_eq!(err.code, "RETRY_LATER");
        assert_eq!(err.retry_after, Some(Duration::from_millis(150)));
        assert_eq!(
            classify(200, br#"{"errors":[{}]}"#, Parse::Full).code,
            NO_CODE
        );
        assert_eq!(classify(503, b"down", Parse::Full).code, "HTTP_503");
        assert_eq!(classify(200, b"<html>", Parse::Full).code, BAD_RESPONSE);
        assert!(is_failure("HTTP_502") && is_failure("INTERNAL") && !is_failure("HTTP_413"));
        assert!(!is_failure("SEAT_UNAVAILABLE"));
    }

    #[test]
    fn reads_the_seq_from_the_head_of_a_seat_map() {
        let map = br#"{"data":{"seatMap":{"seq":12345,"event":{"id":"1"},"seats":[]}}}"#;
        assert_eq!(seq_from_head(map), Some(12345));
        assert_eq!(seq_from_head(&map[..HEAD.min(map.len())]), Some(12345));
        assert_eq!(seq_from_head(br#"{"data":{"seatMap":{"seq":0}}}"#), Some(0));
        // A head that ends inside the number does not know it.
        assert_eq!(seq_from_head(br#"{"data":{"seatMap":{"seq":123"#), None);
        assert_eq!(seq_from_head(br#"{"data":{"seatMap":{"seats":[]}}}"#), None);
        assert_eq!(seq_from_head(br#"{"errors":[{"message":"x"}]}"#), None);
        assert_eq!(seq_from_head(b""), None);
        // The gzip form inflates only the head.
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(map).expect("gzip into memory");
        let body = gz.finish().expect("gzip into memory");
        use std::io::Read as _;
        let mut head = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .take(HEAD as u64)
            .read_to_end(&mut head)
            .expect("inflate");
        assert_eq!(seq_from_head(&head), Some(12345));
    }
}
