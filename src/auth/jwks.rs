//! Keys of an identity provider: its JWKS, fetched over HTTP (directly or through OIDC
//! discovery), cached, and fetched again on an unknown `kid` at most once per
//! `min_refresh`, and every `refresh_every` once it has been used.
//!
//! Each key's algorithm comes from the key (`alg`, or `kty` and `crv`), never from a token:
//! a token whose header names another algorithm is refused, and symmetric keys in a key set
//! are ignored, so no token can be verified with a public key used as an HMAC secret.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{JwksConfig, JwksSource};

/// Largest key set or discovery document read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Longest one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A verification key and the one algorithm it verifies.
pub(super) struct Key {
    pub alg: Algorithm,
    pub key: DecodingKey,
    pub validation: Validation,
}

/// The keys as last fetched.
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys without a `kid`; used only for tokens without one, when they are the only key.
    unnamed: Vec<Arc<Key>>,
}

/// What a lookup found.
pub(super) enum Found {
    Key(Arc<Key>),
    /// No key for this `kid` in the cached set.
    Unknown,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    /// The `jwks_uri` found by discovery (kept until a fetch from it fails).
    discovered: Option<String>,
    /// Whether a token ever asked for these keys (the periodic refresh waits for that).
    used: bool,
}

/// The cached key set of one identity provider.
pub(super) struct KeySet {
    source: JwksSource,
    http: reqwest::Client,
    keys: RwLock<Arc<Keys>>,
    refresh: tokio::sync::Mutex<RefreshState>,
    min_refresh: Duration,
    refresh_every: Duration,
    /// The checks every key's validation makes besides the signature.
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: Option<String>,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    pub fn new(
        config: &JwksConfig,
        issuer: String,
        audience: String,
        leeway_secs: u64,
    ) -> Result<Arc<Self>, reqwest::Error> {
        crate::payment::install_crypto_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("onsale/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Self {
            source: config.source.clone(),
            http,
            keys: RwLock::default(),
            refresh: tokio::sync::Mutex::default(),
            min_refresh: config.min_refresh,
            refresh_every: config.refresh_every,
            issuer,
            audience,
            leeway_secs,
        }))
    }

    /// The cached key for `kid` (a token without `kid`: the only key, if there is one).
    pub fn find(&self, kid: Option<&str>) -> Found {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let key = match kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            None if keys.by_kid.len() + keys.unnamed.len() == 1 => keys
                .by_kid
                .values()
                .next()
                .or(keys.unnamed.first())
                .cloned(),
            None => None,
        };
        key.map_or(Found::Unknown, Found::Key)
    }

    /// Fetches the keys again unless that was tried less than `min_refresh` ago. Callers
    /// that arrive while a fetch runs wait for it (one fetch for all of them), then look
    /// again.
    pub async fn refresh(&self) {
        let mut state = self.refresh.lock().await;
        state.used = true;
        if state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.min_refresh)
        {
            return;
        }
        self.fetch_under(&mut state).await;
    }

    /// Refreshes every `refresh_every` while `set` lives, once a token has used it.
    pub fn spawn_periodic_refresh(set: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(set);
        let every = set.refresh_every;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(set) = weak.upgrade() else { break };
                let mut state = set.refresh.lock().await;
                if state.used {
                    set.fetch_under(&mut state).await;
                }
            }
        });
    }

    async fn fetch_under(&self, state: &mut RefreshState) {
        state.last_attempt = Some(Instant::now());
        match self.fetch(state).await {
            Ok(keys) => {
                metrics::counter!("onsale_jwks_fetches_total", "outcome" => "ok").increment(1);
                tracing::info!(
                    keys = keys.by_kid.len() + keys.unnamed.len(),
                    "fetched the identity provider's keys"
                );
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
            }
            Err(problem) => {
                metrics::counter!("onsale_jwks_fetches_total", "outcome" => "failed").increment(1);
                // The cached keys stay in use.
                tracing::warn!(%problem, "cannot fetch the identity provider's keys");
            }
        }
    }

    async fn fetch(&self, state: &mut RefreshState) -> Result<Keys, String> {
        let url = match (&self.source, &state.discovered) {
            (JwksSource::Url(url), _) => url.clone(),
            (JwksSource::Discovery(_), Some(url)) => url.clone(),
            (JwksSource::Discovery(issuer), None) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let doc: Discovery = serde_json::from_slice(&self.get(&url).await?)
                    .map_err(|e| format!("{url}: not a discovery document: {e}"))?;
                if doc.issuer.as_deref().is_some_and(|iss| iss != issuer) {
                    return Err(format!("{url}: names another issuer"));
                }
                state.discovered = Some(doc.jwks_uri.clone());
                doc.jwks_uri
            }
        };
        let body = match self.get(&url).await {
            Ok(body) => body,
            Err(e) => {
                state.discovered = None;
                return Err(e);
            }
        };
        let raw: RawSet =
            serde_json::from_slice(&body).map_err(|e| format!("{url}: not a JWKS: {e}"))?;
        let mut keys = Keys::default();
        for value in raw.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            let Some(key) = self.key_from(&jwk) else {
                continue;
            };
            match jwk.common.key_id {
                Some(kid) => {
                    keys.by_kid.insert(kid, Arc::new(key));
                }
                None => keys.unnamed.push(Arc::new(key)),
            }
        }
        Ok(keys)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// A signing key and its algorithm, or `None` for keys not for signatures, symmetric
    /// keys, and keys whose `alg` does not fit their type.
    fn key_from(&self, jwk: &Jwk) -> Option<Key> {
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return None;
        }
        let declared = match jwk.common.key_algorithm {
            Some(alg) => Some(alg.to_string().parse::<Algorithm>().ok()?),
            None => None,
        };
        let alg = match (&jwk.algorithm, declared) {
            (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
            (
                AlgorithmParameters::RSA(_),
                Some(
                    alg @ (Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512),
                ),
            ) => alg,
            (AlgorithmParameters::EllipticCurve(ec), declared) => match (&ec.curve, declared) {
                (EllipticCurve::P256, None | Some(Algorithm::ES256)) => Algorithm::ES256,
                (EllipticCurve::P384, None | Some(Algorithm::ES384)) => Algorithm::ES384,
                _ => return None,
            },
            (AlgorithmParameters::OctetKeyPair(okp), None | Some(Algorithm::EdDSA))
                if okp.curve == EllipticCurve::Ed25519 =>
            {
                Algorithm::EdDSA
            }
            _ => return None,
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Some(Key {
            alg,
            key,
            validation,
        })
    }
}
