//! GraphiQL at `/` is served by onsale itself: a page, its script and the bundled libraries,
//! all from this origin under a Content-Security-Policy that allows nothing else.

use crate::helpers::{Options, TestApp, fresh_sqlite_database};

/// The page and every file it loads.
const ASSETS: [(&str, &str); 5] = [
    ("/graphiql/app.js", "text/javascript; charset=utf-8"),
    ("/graphiql/style.css", "text/css; charset=utf-8"),
    (
        "/graphiql/vendor/graphiql.js",
        "text/javascript; charset=utf-8",
    ),
    ("/graphiql/vendor/graphiql.css", "text/css; charset=utf-8"),
    ("/graphiql/schema.graphql", "text/plain; charset=utf-8"),
];

const POLICY: &str =
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; font-src 'self' data:";

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .expect("GET")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The values of every `src="…"` and `href="…"` in an HTML page.
fn links(html: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attr| html.split(attr).skip(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn graphiql_loads_nothing_from_elsewhere() {
    let app = TestApp::spawn_on(&fresh_sqlite_database(), Options::default()).await;

    let mut nonces = Vec::new();
    for path in ["/", "/graphql"] {
        let page = get(&app, path).await;
        assert_eq!(page.status(), 200, "{path}");
        assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&page, "x-frame-options"), "DENY");
        let policy = header(&page, "content-security-policy");
        let html = page.text().await.expect("html");

        // Styles: this origin, or a <style> carrying this response's nonce, which the page
        // hands to GraphiQL in its csp-nonce meta tag.
        let nonce = html
            .split("<meta name=\"csp-nonce\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page has a csp-nonce meta tag")
            .to_owned();
        assert_eq!(nonce.len(), 32, "{nonce}");
        assert!(nonce.chars().all(|c| c.is_ascii_hexdigit()), "{nonce}");
        assert_eq!(
            policy,
            format!("{POLICY}; style-src 'self' 'nonce-{nonce}'"),
            "{path}"
        );
        nonces.push(nonce);

        let links = links(&html);
        assert_eq!(
            links,
            [
                "/graphiql/app.js",
                "data:,",
                "/graphiql/vendor/graphiql.css",
                "/graphiql/style.css"
            ],
            "{path} loads only onsale's own files"
        );
    }
    assert_ne!(
        nonces[0], nonces[1],
        "every response has a nonce of its own"
    );

    for (path, content_type) in ASSETS {
        let asset = get(&app, path).await;
        assert_eq!(asset.status(), 200, "{path}");
        assert_eq!(header(&asset, "content-type"), content_type, "{path}");
        assert_eq!(header(&asset, "content-security-policy"), POLICY, "{path}");
        let body = asset.text().await.expect("body");
        match path {
            "/graphiql/app.js" => {
                assert!(
                    body.contains("from '/graphiql/vendor/graphiql.js'"),
                    "the script imports the bundle from this origin"
                );
                assert!(
                    body.contains("'/graphql/ws'"),
                    "subscriptions go to /graphql/ws"
                );
            }
            "/graphiql/vendor/graphiql.js" => {
                assert!(body.starts_with("/*! GraphiQL 4."), "{}", &body[..80]);
            }
            "/graphiql/schema.graphql" => {
                assert_eq!(body, onsale::graphql::sdl(), "the schema the server runs");
            }
            _ => {}
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn graphiql_off_serves_none_of_it() {
    let app = TestApp::spawn_on(
        &fresh_sqlite_database(),
        Options::default().set("GRAPHIQL", "false"),
    )
    .await;
    for path in ["/", "/graphql"]
        .into_iter()
        .chain(ASSETS.iter().map(|(path, _)| *path))
    {
        assert_eq!(get(&app, path).await.status(), 404, "{path}");
    }
    app.stop().await;
}
