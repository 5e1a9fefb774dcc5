//! A Stripe in front of localstripe that passes every call through except captures, which it
//! refuses or holds back: for tests of a Stripe outage and of a call that outlives its lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use tokio::sync::Semaphore;

/// What the proxy does with a capture.
#[derive(Clone, Copy, Debug)]
pub enum Captures {
    /// Answers each with a 500, as a Stripe in trouble would.
    Refused,
    /// Holds each until [`CaptureProxy::let_go`], then passes it through.
    Held,
}

pub struct CaptureProxy {
    pub base: String,
    captures: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl CaptureProxy {
    pub async fn start(upstream: String, captures: Captures) -> Self {
        onsale::payment::install_crypto_provider();
        let client = reqwest::Client::new();
        let seen = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (counter, shut) = (seen.clone(), gate.clone());
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (client, upstream) = (client.clone(), upstream.clone());
                let (counter, shut) = (counter.clone(), shut.clone());
                async move {
                    if uri.path().ends_with("/capture") {
                        counter.fetch_add(1, Ordering::SeqCst);
                        match captures {
                            Captures::Refused => {
                                return (
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "{\"error\":{\"message\":\"down\"}}",
                                )
                                    .into_response();
                            }
                            Captures::Held => {
                                let _ = shut.acquire().await;
                            }
                        }
                    }
                    let mut req = client
                        .request(method, format!("{upstream}{uri}"))
                        .body(body);
                    for name in ["authorization", "content-type", "idempotency-key"] {
                        if let Some(v) = headers.get(name) {
                            req = req.header(name, v);
                        }
                    }
                    match req.send().await {
                        Ok(resp) => {
                            let status = StatusCode::from_u16(resp.status().as_u16())
                                .unwrap_or(StatusCode::BAD_GATEWAY);
                            (status, resp.bytes().await.unwrap_or_default()).into_response()
                        }
                        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base,
            captures: seen,
            gate,
            task,
        }
    }

    /// How many captures it has refused or held so far.
    pub fn captures(&self) -> usize {
        self.captures.load(Ordering::SeqCst)
    }

    /// Lets every held capture (and every later one) through.
    pub fn let_go(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

impl Drop for CaptureProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
