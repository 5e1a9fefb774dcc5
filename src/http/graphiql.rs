//! GraphiQL at `GET /` (and `GET /graphql`), served entirely by onsale: the page in
//! `web/graphiql/` and the production builds of React and GraphiQL (with the graphql-ws client
//! for subscriptions) that `web/build.sh` bundles into `web/graphiql/vendor/` from pinned npm
//! packages. Everything is embedded in the binary, so GraphiQL works with no network, and the
//! Content-Security-Policy lets the page load nothing from elsewhere. `GRAPHIQL=false` turns
//! all of it off (404).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::embedded::{self, CSS, HTML, JAVASCRIPT, PLAIN_TEXT};

const INDEX_HTML: &str = include_str!("../../web/graphiql/index.html");
const APP_JS: &str = include_str!("../../web/graphiql/app.js");
const STYLE_CSS: &str = include_str!("../../web/graphiql/style.css");
const VENDOR_JS: &str = include_str!("../../web/graphiql/vendor/graphiql.js");
const VENDOR_CSS: &str = include_str!("../../web/graphiql/vendor/graphiql.css");

/// Where `index.html` wants this response's nonce.
const NONCE_PLACEHOLDER: &str = "__CSP_NONCE__";

/// Scripts, stylesheets and fetches only from this origin (WebSockets to any host, so
/// subscriptions also work behind a proxy that terminates TLS); GraphiQL's fonts and icons are
/// `data:` URLs inside its stylesheet; no inline script; no framing.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; font-src 'self' data:";

/// The GraphiQL page, also at `GET /graphql`. Its dialogs and menus insert `<style>` elements;
/// those carry a nonce that is new for every response, so the policy still allows no other
/// inline style.
pub async fn page(State(state): State<AppState>) -> Response {
    if !state.graphiql {
        return StatusCode::NOT_FOUND.into_response();
    }
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let policy = format!("{CONTENT_SECURITY_POLICY}; style-src 'self' 'nonce-{nonce}'");
    // Hex digits and ASCII punctuation: always a valid header value.
    let Ok(policy) = HeaderValue::try_from(policy) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    embedded::file(HTML, policy, INDEX_HTML.replace(NONCE_PLACEHOLDER, &nonce))
}

/// The page's script, stylesheet and bundled libraries, and the schema it shows.
pub fn assets() -> Router<AppState> {
    Router::new()
        .route("/graphiql/schema.graphql", get(schema))
        .route(
            "/graphiql/app.js",
            get(|State(state): State<AppState>| async move { asset(&state, JAVASCRIPT, APP_JS) }),
        )
        .route(
            "/graphiql/style.css",
            get(|State(state): State<AppState>| async move { asset(&state, CSS, STYLE_CSS) }),
        )
        .route(
            "/graphiql/vendor/graphiql.js",
            get(
                |State(state): State<AppState>| async move { asset(&state, JAVASCRIPT, VENDOR_JS) },
            ),
        )
        .route(
            "/graphiql/vendor/graphiql.css",
            get(|State(state): State<AppState>| async move { asset(&state, CSS, VENDOR_CSS) }),
        )
}

/// The SDL of the schema this server runs, which GraphiQL builds its schema from: GraphQL's
/// standard introspection query nests deeper than `MAX_DEPTH` allows.
async fn schema(State(state): State<AppState>) -> Response {
    if !state.graphiql {
        return StatusCode::NOT_FOUND.into_response();
    }
    embedded::file(
        PLAIN_TEXT,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        state.schema.sdl(),
    )
}

fn asset(state: &AppState, content_type: &'static str, body: &'static str) -> Response {
    if !state.graphiql {
        return StatusCode::NOT_FOUND.into_response();
    }
    embedded::file(
        content_type,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::{INDEX_HTML, NONCE_PLACEHOLDER};

    #[test]
    fn the_page_has_one_place_for_the_nonce() {
        assert_eq!(INDEX_HTML.matches(NONCE_PLACEHOLDER).count(), 1);
    }
}
