//! Serving connections: HTTP/1.1 through hyper, upgrades for WebSocket, graceful shutdown,
//! and two clocks per connection. A request's headers must arrive within the header timeout
//! once its first byte has come (a client that trickles its headers is cut); a keep-alive
//! connection may sit idle between requests for [`IDLE_TIMEOUT`], longer than common client
//! pools keep idle connections, so a client never reuses a connection the server is closing.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tower::ServiceExt;

/// How long in-flight requests may take to finish once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a keep-alive connection may wait for its next request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Serves `router` on `listener` until `stop` completes, then lets open connections finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    stop: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // Each connection holds a sender; when the last is gone, every connection has closed.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's own header clock runs while a connection waits for a request: the idle limit.
    http.timer(TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT)
        .keep_alive(true);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let (io, in_request) = HeaderClock::new(stream, header_timeout);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // The headers are in: their clock stops until the next request begins.
            let request_done = InRequest::start(in_request.clone());
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            let router = router.clone();
            async move {
                let response = router
                    .oneshot(request.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                if response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
                    // Now a WebSocket: it is no longer made of requests, so no header clock.
                    std::mem::forget(request_done);
                } else {
                    drop(request_done);
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = http
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let (open, mut closing) = (open_tx.clone(), closing_rx.clone());
        tokio::spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = async { let _ = closing.wait_for(|closing| *closing).await; } => {
                    // Finish the request in flight, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(open_tx);
    if tokio::time::timeout(DRAIN_TIMEOUT, open_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the drain timeout");
    }
    Ok(())
}

/// Marks a connection as inside a request (headers read, answer not yet made) while alive.
struct InRequest(Arc<AtomicBool>);

impl InRequest {
    fn start(flag: Arc<AtomicBool>) -> Self {
        flag.store(true, Ordering::Release);
        Self(flag)
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A connection whose reads fail once a request's headers take longer than `timeout` from
/// its first byte. Between requests, and while one is being answered, no clock runs here.
struct HeaderClock {
    io: TcpStream,
    timeout: Duration,
    in_request: Arc<AtomicBool>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl HeaderClock {
    fn new(io: TcpStream, timeout: Duration) -> (Self, Arc<AtomicBool>) {
        let in_request = Arc::new(AtomicBool::new(false));
        let clock = Self {
            io,
            timeout,
            in_request: in_request.clone(),
            deadline: None,
        };
        (clock, in_request)
    }
}

impl AsyncRead for HeaderClock {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.in_request.load(Ordering::Acquire) {
            this.deadline = None;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got_bytes = buf.filled().len() > before;
                if got_bytes && this.deadline.is_none() && !this.in_request.load(Ordering::Acquire)
                {
                    // The first byte of a request: its headers' clock starts.
                    this.deadline = Some(Box::pin(tokio::time::sleep(this.timeout)));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut() {
                    ready!(deadline.as_mut().poll(cx));
                    metrics::counter!("onsale_http_header_timeouts_total").increment(1);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request headers did not arrive in time",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for HeaderClock {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
