//! The live seat-map demo page (`GET /demo`) and the dev sign-in it uses (`POST /dev/token`).
//!
//! The page's files live in `web/demo/` and are embedded in the binary, so `onsale` serves
//! them with nothing on disk and no build step (`web/build.sh` only rebuilds the committed
//! graphql-ws bundle).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::embedded::{self, CSS, HTML, JAVASCRIPT};

const INDEX_HTML: &str = include_str!("../../web/demo/index.html");
const APP_JS: &str = include_str!("../../web/demo/app.js");
const STYLE_CSS: &str = include_str!("../../web/demo/style.css");
const GRAPHQL_WS_JS: &str = include_str!("../../web/demo/vendor/graphql-ws.js");

/// Scripts, styles and fetches only from this origin (WebSockets to any host, so the page
/// also works behind a proxy that terminates TLS); no inline code; no framing.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:";

/// How long a dev sign-in token lasts.
const DEV_TOKEN_TTL_SECS: i64 = 12 * 60 * 60;

/// Longest name accepted by the dev sign-in.
const MAX_DEV_NAME_CHARS: usize = 64;

/// The demo page, its assets and the dev sign-in.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/demo", get(|| async { page(HTML, INDEX_HTML) }))
        .route("/demo/app.js", get(|| async { page(JAVASCRIPT, APP_JS) }))
        .route("/demo/style.css", get(|| async { page(CSS, STYLE_CSS) }))
        .route(
            "/demo/vendor/graphql-ws.js",
            get(|| async { page(JAVASCRIPT, GRAPHQL_WS_JS) }),
        )
        .route("/dev/token", post(dev_token))
}

/// One of the page's files, under the page's policy.
fn page(content_type: &'static str, body: &'static str) -> Response {
    embedded::file(
        content_type,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        body,
    )
}

#[derive(Deserialize)]
struct DevTokenRequest {
    sub: String,
}

/// A name someone signs in with: trimmed, 1 to 64 characters, no control characters.
struct DevName(String);

impl DevName {
    fn parse(raw: &str) -> Result<Self, &'static str> {
        let name = raw.trim();
        if name.is_empty() {
            Err("sub must not be empty")
        } else if name.chars().count() > MAX_DEV_NAME_CHARS {
            Err("sub must be at most 64 characters")
        } else if name.chars().any(char::is_control) {
            Err("sub must not contain control characters")
        } else {
            Ok(Self(name.to_owned()))
        }
    }
}

/// Dev sign-in: `{"sub": "name"}` → `{"token": "<jwt>"}`, a non-admin token valid for 12 hours.
/// Answers 404 unless `DEV_SIGNIN` is on, so production servers do not reveal it exists.
async fn dev_token(
    State(state): State<AppState>,
    body: Result<Json<DevTokenRequest>, JsonRejection>,
) -> Response {
    if !state.dev_signin {
        return StatusCode::NOT_FOUND.into_response();
    }
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return (
                rejection.status(),
                Json(json!({ "error": rejection.body_text() })),
            )
                .into_response();
        }
    };
    let name = match DevName::parse(&request.sub) {
        Ok(name) => name,
        Err(problem) => {
            return (StatusCode::BAD_REQUEST, Json(json!({ "error": problem }))).into_response();
        }
    };
    match state.jwt.issue(&name.0, false, DEV_TOKEN_TTL_SECS) {
        Ok(token) => {
            tracing::info!(sub = %name.0, "issued a dev sign-in token");
            Json(json!({ "token": token })).into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot sign a dev sign-in token");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": "internal error" })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DevName;

    #[test]
    fn dev_names_are_trimmed_and_bounded() {
        assert_eq!(DevName::parse("  ada ").map(|n| n.0), Ok("ada".to_owned()));
        assert!(DevName::parse("   ").is_err());
        assert!(DevName::parse(&"x".repeat(65)).is_err());
        assert!(DevName::parse("a\u{7}b").is_err());
    }
}
