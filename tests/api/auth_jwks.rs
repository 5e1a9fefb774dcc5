//! Tokens from an identity provider: RS256, ES256 and EdDSA tokens verified with the keys of
//! a JWKS the test serves itself over HTTP (directly, and through OIDC discovery); key
//! rotation; refreshes rate limited; the algorithm taken from the key, never the token.
//!
//! The keys under tests/fixtures/jwks/ are test-only keys, generated once with
//! `openssl genpkey` (RSA as PKCS#1 DER, EC P-256 and Ed25519 as PKCS#8 DER, as
//! jsonwebtoken's `from_*_der` take them) and the RSA public key as PEM.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws::{Protocol, Subscription};

const ISSUER: &str = "https://idp.example/realms/onsale";
const AUDIENCE: &str = "onsale-api";

const RSA1: &[u8] = include_bytes!("../fixtures/jwks/rsa1.der");
const RSA1_PUBLIC: &[u8] = include_bytes!("../fixtures/jwks/rsa1.pub.pem");
const RSA2: &[u8] = include_bytes!("../fixtures/jwks/rsa2.der");
const EC: &[u8] = include_bytes!("../fixtures/jwks/ec.der");
const ED: &[u8] = include_bytes!("../fixtures/jwks/ed.der");

/// A signing key of the test's identity provider.
struct SigningKey {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
}

impl SigningKey {
    fn rsa1() -> Self {
        Self::new("rsa-1", Algorithm::RS256, EncodingKey::from_rsa_der(RSA1))
    }
    fn rsa2() -> Self {
        Self::new("rsa-2", Algorithm::RS256, EncodingKey::from_rsa_der(RSA2))
    }
    fn ec() -> Self {
        Self::new("ec-1", Algorithm::ES256, EncodingKey::from_ec_der(EC))
    }
    fn ed() -> Self {
        Self::new("ed-1", Algorithm::EdDSA, EncodingKey::from_ed_der(ED))
    }

    fn new(kid: &'static str, alg: Algorithm, key: EncodingKey) -> Self {
        Self { kid, alg, key }
    }

    /// The public JWK. The EC key is published without `alg`, so the server derives ES256
    /// from `kty` and `crv`.
    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).expect("a public JWK");
        jwk.common.key_id = Some(self.kid.to_owned());
        if self.alg == Algorithm::ES256 {
            jwk.common.key_algorithm = None;
        }
        jwk
    }

    /// A token with these claims, the key's `kid` and algorithm.
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.to_owned());
        self.sign_with(header, claims)
    }

    fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }
}

/// The usual claims of a provider's token for `sub`, plus `extra`.
fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({
        "sub": sub,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": now() + 600,
        "iat": now(),
    });
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        for (name, value) in extra {
            claims.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// The identity provider: a JWKS (`/jwks`) and a discovery document, counting requests.
struct Idp {
    base: String,
    state: Arc<IdpState>,
}

struct IdpState {
    /// The key set served; `None` answers 503.
    keys: Mutex<Option<Value>>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    issuer: Mutex<String>,
}

impl Idp {
    async fn start(keys: &[&SigningKey]) -> Self {
        use axum::extract::State;
        use axum::http::StatusCode;
        use axum::response::{IntoResponse, Json, Response};
        async fn jwks(State(state): State<Arc<IdpState>>) -> Response {
            state.jwks_hits.fetch_add(1, Ordering::SeqCst);
            match state.keys.lock().expect("idp state").clone() {
                Some(keys) => Json(keys).into_response(),
                None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }
        async fn discovery(State(state): State<Arc<IdpState>>) -> Json<Value> {
            state.discovery_hits.fetch_add(1, Ordering::SeqCst);
            let issuer = state.issuer.lock().expect("idp state").clone();
            Json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}))
        }
        let state = Arc::new(IdpState {
            keys: Mutex::new(Some(key_set(keys))),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            issuer: Mutex::new(String::new()),
        });
        let router = axum::Router::new()
            .route("/jwks", axum::routing::get(jwks))
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(discovery),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the identity provider");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        *state.issuer.lock().expect("idp state") = base.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { base, state }
    }

    fn serve(&self, keys: Option<&[&SigningKey]>) {
        *self.state.keys.lock().expect("idp state") = keys.map(key_set);
    }

    fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }
}

fn key_set(keys: &[&SigningKey]) -> Value {
    serde_json::to_value(JwkSet {
        keys: keys.iter().map(|k| k.jwk()).collect(),
    })
    .expect("a JWKS")
}

/// An app that takes tokens from `idp`'s `/jwks`, refreshing at most every `min_refresh_ms`.
async fn app_with_jwks(idp: &Idp, min_refresh_ms: u64) -> TestApp {
    TestApp::spawn_with(
        Backend::Sqlite,
        Options::default()
            .set("JWT_JWKS_URL", format!("{}/jwks", idp.base))
            .set("JWT_ISSUER", ISSUER)
            .set("JWT_AUDIENCE", AUDIENCE)
            .set("JWT_ROLE_CLAIM", "realm_access.roles")
            .set("JWT_JWKS_MIN_REFRESH_MS", min_refresh_ms),
    )
    .await
}

/// `myHolds` with `token`: the list, or the error code.
async fn my_holds(app: &TestApp, token: &str) -> Result<usize, String> {
    let body = app.gql(Some(token), ops::MY_HOLD_IDS, json!({})).await;
    match error_code(&body) {
        Some(code) => Err(code),
        None => Ok(data(&body, "myHolds")
            .as_array()
            .expect("a list of holds")
            .len()),
    }
}

fn unsigned(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwks_tokens_of_each_key_type_act_as_their_user() {
    let (rsa, ec, ed) = (SigningKey::rsa1(), SigningKey::ec(), SigningKey::ed());
    let idp = Idp::start(&[&rsa, &ec, &ed]).await;
    let app = app_with_jwks(&idp, 60_000).await;

    // Each key type signs a token that acts as its user: a hold made with it is theirs.
    let admin = rsa.sign(&claims(
        "keycloak-admin",
        json!({"realm_access": {"roles": ["offline_access", "admin"]}}),
    ));
    let input = ops::EventInput::rows(
        "Provider Night",
        "Hall",
        "2030-01-01T20:00:00Z",
        "Main",
        [(4, 1000)],
    );
    let (event_id, seats) = app
        .create_event_from(&admin, &ops::vars::create_event(&input))
        .await;
    for (i, key) in [&rsa, &ec, &ed].into_iter().enumerate() {
        let token = key.sign(&claims(&format!("user-{}", key.kid), json!({})));
        assert_eq!(my_holds(&app, &token).await, Ok(0), "{}", key.kid);
        let body = app.hold_seats(&token, &event_id, &[&seats[i]]).await;
        assert_eq!(data(&body, "holdSeats")["status"], "ACTIVE", "{}", key.kid);
        assert_eq!(my_holds(&app, &token).await, Ok(1), "{}", key.kid);
    }

    // The role is read at JWT_ROLE_CLAIM only: `role: admin` at the top does not make an
    // admin, and neither does a role list without "admin".
    for (what, extra) in [
        ("top-level role", json!({"role": "admin"})),
        ("other roles", json!({"realm_access": {"roles": ["user"]}})),
        (
            "role as a string",
            json!({"realm_access": {"roles": "user"}}),
        ),
    ] {
        let token = ec.sign(&claims("not-an-admin", extra));
        let body = app
            .gql(
                Some(&token),
                ops::CREATE_EVENT,
                ops::vars::create_event(&input),
            )
            .await;
        assert_eq!(expect_error(&body), "FORBIDDEN", "{what}");
    }
    let string_admin = ed.sign(&claims(
        "string-admin",
        json!({"realm_access": {"roles": "admin"}}),
    ));
    let body = app
        .gql(
            Some(&string_admin),
            ops::CREATE_EVENT,
            ops::vars::create_event(&input),
        )
        .await;
    assert!(body["errors"].is_null(), "a string role of admin: {body}");

    // HS256 tokens signed with JWT_SECRET keep working beside the provider's.
    let hs = sign(&claims("secret-user", json!({})), JWT_SECRET);
    assert_eq!(my_holds(&app, &hs).await, Ok(0));

    // The same verification for WebSocket connection_init.
    let token = ed.sign(&claims("user-ed-1", json!({})));
    let mut sub = Subscription::start(
        &app.base,
        Protocol::TransportWs,
        json!({"Authorization": format!("Bearer {token}")}),
        ops::MY_HOLD_IDS,
        json!({}),
    )
    .await;
    let payload = sub.next(Duration::from_secs(5)).await.expect("an answer");
    assert!(
        payload["errors"].is_null(),
        "myHolds over WebSocket: {payload}"
    );
    assert_eq!(
        payload["data"]["myHolds"].as_array().map(Vec::len),
        Some(1),
        "{payload}"
    );
    sub.close().await;
    let forged = rsa.sign(&claims("user-ed-1", json!({"aud": "another-api"})));
    let mut sub = Subscription::start(
        &app.base,
        Protocol::TransportWs,
        json!({"Authorization": format!("Bearer {forged}")}),
        ops::MY_HOLD_IDS,
        json!({}),
    )
    .await;
    let payload = sub.next(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(
        error_code(&payload).as_deref(),
        Some("UNAUTHENTICATED"),
        "{payload}"
    );
    sub.close().await;

    // All of that took one fetch of the key set.
    assert_eq!(idp.jwks_hits(), 1);
    assert_healthy(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwks_refuses_wrong_claims_and_algorithm_confusion() {
    let (rsa, ec) = (SigningKey::rsa1(), SigningKey::ec());
    let idp = Idp::start(&[&rsa, &ec]).await;
    let app = app_with_jwks(&idp, 60_000).await;
    let good = claims("alice", json!({}));
    // The first tokens, at once, share one fetch of the key set.
    let first = (0..10).map(|i| {
        let token = [&rsa, &ec][i % 2].sign(&good);
        let app = &app;
        async move { my_holds(app, &token).await }
    });
    let answers = futures::future::join_all(first).await;
    assert!(answers.iter().all(|a| *a == Ok(0)), "{answers:?}");
    assert_eq!(idp.jwks_hits(), 1);

    let without = |name: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().expect("claims").remove(name);
        claims
    };
    let header = |alg: Algorithm, kid: &str| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        header
    };
    let hs_with = |secret: &[u8], kid: &str| {
        jsonwebtoken::encode(
            &header(Algorithm::HS256, kid),
            &good,
            &EncodingKey::from_secret(secret),
        )
        .expect("sign")
    };
    let rsa_jwk = serde_json::to_value(rsa.jwk()).expect("jwk");
    let modulus = URL_SAFE_NO_PAD
        .decode(rsa_jwk["n"].as_str().expect("n"))
        .expect("n bytes");
    let mut jku = header(Algorithm::RS256, "rsa-1");
    jku.jku = Some("https://evil.example/jwks".to_owned());
    let mut x5u = header(Algorithm::RS256, "rsa-1");
    x5u.x5u = Some("https://evil.example/cert.pem".to_owned());
    let mut embedded = header(Algorithm::RS256, "rsa-1");
    embedded.jwk = Some(rsa.jwk());
    let stranger = SigningKey::rsa2();
    let cases = [
        (
            "wrong iss",
            rsa.sign(&claims("alice", json!({"iss": "https://evil.example"}))),
        ),
        ("no iss", rsa.sign(&without("iss"))),
        (
            "wrong aud",
            ec.sign(&claims("alice", json!({"aud": "another-api"}))),
        ),
        ("no aud", ec.sign(&without("aud"))),
        (
            "expired",
            rsa.sign(&claims("alice", json!({"exp": now() - 120}))),
        ),
        (
            "not yet valid",
            rsa.sign(&claims("alice", json!({"nbf": now() + 600}))),
        ),
        ("no sub", rsa.sign(&without("sub"))),
        ("blank sub", rsa.sign(&claims(" alice", json!({})))),
        (
            "alg none",
            unsigned(json!({"alg": "none", "kid": "rsa-1", "typ": "JWT"}), &good),
        ),
        (
            "HS256 with the public key PEM",
            hs_with(RSA1_PUBLIC, "rsa-1"),
        ),
        ("HS256 with the modulus", hs_with(&modulus, "rsa-1")),
        (
            "HS256 with the public key PEM, no kid",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &good,
                &EncodingKey::from_secret(RSA1_PUBLIC),
            )
            .expect("sign"),
        ),
        // The RSA key declares RS256: a valid RS384 signature of it is still refused.
        (
            "RS384 with the RS256 key",
            rsa.sign_with(header(Algorithm::RS384, "rsa-1"), &good),
        ),
        // The EC key's kid with a header naming RS256 (signed by the RSA key).
        (
            "header alg differs from the key's",
            rsa.sign_with(header(Algorithm::RS256, "ec-1"), &good),
        ),
        ("jku elsewhere", rsa.sign_with(jku, &good)),
        ("x5u elsewhere", rsa.sign_with(x5u, &good)),
        ("embedded jwk", rsa.sign_with(embedded, &good)),
        (
            "a key not in the set, under a known kid",
            stranger.sign_with(header(Algorithm::RS256, "rsa-1"), &good),
        ),
        ("an unknown kid", stranger.sign(&good)),
    ];
    for (what, token) in &cases {
        assert_eq!(
            my_holds(&app, token).await,
            Err("UNAUTHENTICATED".to_owned()),
            "{what}"
        );
    }

    // A burst of tokens with unknown kids, at once: refused, and the key set was not fetched
    // again (one fetch per JWT_JWKS_MIN_REFRESH_MS, here a minute; the first was above).
    let burst = (0..20).map(|i| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(format!("unknown-{i}"));
        let token = stranger.sign_with(header, &good);
        let app = &app;
        async move { my_holds(app, &token).await }
    });
    let answers = futures::future::join_all(burst).await;
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().err().map(String::as_str) == Some("UNAUTHENTICATED")),
        "{answers:?}"
    );
    assert_eq!(idp.jwks_hits(), 1);
    // The good token still works.
    assert_eq!(my_holds(&app, &ec.sign(&good)).await, Ok(0));
    assert_healthy(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwks_rotation_is_picked_up_and_a_removed_key_stops_working() {
    let (old, new) = (SigningKey::rsa1(), SigningKey::rsa2());
    let idp = Idp::start(&[&old]).await;
    let app = app_with_jwks(&idp, 200).await;
    let good = claims("alice", json!({}));
    let old_token = old.sign(&good);
    let new_token = new.sign(&good);
    assert_eq!(my_holds(&app, &old_token).await, Ok(0));
    assert_eq!(idp.jwks_hits(), 1);

    // The provider rotates: once the refresh interval has passed, the new kid fetches the
    // new set once and works, without a restart.
    idp.serve(Some(&[&new]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(my_holds(&app, &new_token).await, Ok(0));
    assert_eq!(idp.jwks_hits(), 2);
    assert_eq!(my_holds(&app, &new_token).await, Ok(0));
    assert_eq!(idp.jwks_hits(), 2, "a cached key needs no fetch");
    // The removed key is gone with the refresh.
    assert_eq!(
        my_holds(&app, &old_token).await,
        Err("UNAUTHENTICATED".to_owned())
    );

    // The provider goes down: an unknown kid tries one fetch, which fails, and is refused;
    // the cached key keeps working.
    idp.serve(None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = idp.jwks_hits();
    assert_eq!(
        my_holds(&app, &old_token).await,
        Err("UNAUTHENTICATED".to_owned())
    );
    assert_eq!(idp.jwks_hits(), before + 1, "the failed fetch");
    assert_eq!(my_holds(&app, &new_token).await, Ok(0));
    assert_healthy(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwks_from_oidc_discovery_of_the_issuer() {
    let ec = SigningKey::ec();
    let idp = Idp::start(&[&ec]).await;
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        Options::default()
            .set("JWT_ISSUER", &idp.base)
            .set("JWT_AUDIENCE", AUDIENCE),
    )
    .await;
    let token = ec.sign(&claims("alice", json!({"iss": idp.base})));
    assert_eq!(my_holds(&app, &token).await, Ok(0));
    assert_eq!(idp.state.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(idp.jwks_hits(), 1);
    // The discovered issuer is required: the fixed ISSUER of the other tests is not it.
    let other = ec.sign(&claims("alice", json!({})));
    assert_eq!(
        my_holds(&app, &other).await,
        Err("UNAUTHENTICATED".to_owned())
    );
    app.stop().await;
}

/// Auth0-style namespaced claims contain dots: `JWT_ROLE_CLAIM` names such a top-level claim
/// as it is, before reading it as a dotted path.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwks_role_claim_may_be_a_namespaced_top_level_claim() {
    let rsa = SigningKey::rsa1();
    let idp = Idp::start(&[&rsa]).await;
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        Options::default()
            .set("JWT_JWKS_URL", format!("{}/jwks", idp.base))
            .set("JWT_ISSUER", ISSUER)
            .set("JWT_AUDIENCE", AUDIENCE)
            .set("JWT_ROLE_CLAIM", "https://onsale.example/role"),
    )
    .await;
    let input = ops::EventInput::rows(
        "Namespaced Night",
        "Hall",
        "2030-01-01T20:00:00Z",
        "Main",
        [(2, 1000)],
    );
    let admin = rsa.sign(&claims(
        "namespaced-admin",
        json!({"https://onsale.example/role": "admin"}),
    ));
    let body = app
        .gql(
            Some(&admin),
            ops::CREATE_EVENT,
            ops::vars::create_event(&input),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    let user = rsa.sign(&claims(
        "namespaced-user",
        json!({"https://onsale.example/role": "user"}),
    ));
    let body = app
        .gql(
            Some(&user),
            ops::CREATE_EVENT,
            ops::vars::create_event(&input),
        )
        .await;
    assert_eq!(expect_error(&body), "FORBIDDEN");
}
