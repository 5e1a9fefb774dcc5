//! Files embedded in the binary (the demo page, GraphiQL), answered with their security
//! headers, so a page loads what the Content-Security-Policy allows and nothing else.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

pub const HTML: &str = "text/html; charset=utf-8";
pub const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
pub const CSS: &str = "text/css; charset=utf-8";
pub const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// One embedded file with its content type, the page's Content-Security-Policy, no framing
/// and no referrer.
pub fn file(content_type: &'static str, csp: HeaderValue, body: impl Into<Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            // The files change with the binary: revalidate rather than run a stale script.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body.into(),
    )
        .into_response()
}
