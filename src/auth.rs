//! Bearer tokens: HS256 JWTs with `sub`, `exp` and an optional `role`, signed with
//! `JWT_SECRET`; and, when an identity provider is configured, RS256/ES256/EdDSA tokens
//! signed with the keys of its JWKS (see [`jwks`]).
//!
//! One verifier serves HTTP, the CSV export and WebSocket `connection_init`. Verification
//! with cached keys never waits on the network. A token naming a `kid` the cache does not
//! know waits for one refresh of the key set, shared by every request that needs it, and
//! at most once per `JWT_JWKS_MIN_REFRESH_MS`; inside that window it is refused at once.
//! (Waiting, rather than refusing the first token of a rotated key, means a key rotation
//! costs no user a failed request.)

mod jwks;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::JwksConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// A string or a list of strings, as RFC 7519 allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
}

/// Who is making a request.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    /// A token was sent but is not valid; anything that needs a user is refused.
    Invalid,
    User(User),
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub admin: bool,
}

impl Caller {
    /// The user, or `UNAUTHENTICATED`.
    pub fn user(&self) -> Result<&User, crate::error::AppError> {
        match self {
            Caller::User(user) => Ok(user),
            Caller::Anonymous => Err(crate::error::AppError::Unauthenticated(
                "a bearer token is required".into(),
            )),
            Caller::Invalid => Err(crate::error::AppError::Unauthenticated(
                "the bearer token is invalid or expired".into(),
            )),
        }
    }

    /// The user if they are an admin; `UNAUTHENTICATED` or `FORBIDDEN` otherwise.
    pub fn admin(&self) -> Result<&User, crate::error::AppError> {
        let user = self.user()?;
        if user.admin {
            Ok(user)
        } else {
            Err(crate::error::AppError::Forbidden(
                "this needs an admin token".into(),
            ))
        }
    }
}

/// Signs and verifies tokens with one secret, and verifies an identity provider's tokens.
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
    /// Where an identity provider's token carries its role (`JWT_ROLE_CLAIM`), split at dots.
    role_claim: Vec<String>,
    jwks: Option<Arc<jwks::KeySet>>,
}

/// What the cached keys say about a token.
enum Verdict {
    User(User),
    Refused,
    /// Signed with a key the cache does not know (yet).
    UnknownKey,
}

/// Why an identity provider cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksSetupError {
    #[error("JWT_ISSUER and JWT_AUDIENCE are required with an identity provider")]
    MissingIssuerOrAudience,
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl Jwt {
    pub fn new(secret: &str, leeway_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            issuer: None,
            audience: None,
            leeway_secs,
            role_claim: vec!["role".to_owned()],
            jwks: None,
        }
    }

    /// Where an identity provider's tokens carry the role: a top-level claim of that exact
    /// name (`https://example.com/role`), else a dotted path of claim names
    /// (`realm_access.roles`); the value is `"admin"` or a list containing it. Tokens signed
    /// with `JWT_SECRET` keep `role`.
    pub fn with_role_claim(mut self, path: &str) -> Self {
        self.role_claim = path.split('.').map(str::to_owned).collect();
        self
    }

    /// Also accepts tokens signed by the identity provider's keys; its `iss` and `aud` (set
    /// with [`Jwt::with_issuer_audience`] first) are required. Starts the periodic refresh,
    /// so it needs a Tokio runtime.
    pub fn with_jwks(mut self, config: &JwksConfig) -> Result<Self, JwksSetupError> {
        let (Some(issuer), Some(audience)) = (self.issuer.clone(), self.audience.clone()) else {
            return Err(JwksSetupError::MissingIssuerOrAudience);
        };
        let set = jwks::KeySet::new(config, issuer, audience, self.leeway_secs)?;
        jwks::KeySet::spawn_periodic_refresh(&set);
        self.jwks = Some(set);
        Ok(self)
    }

    /// The verifier the configuration describes.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, JwksSetupError> {
        let jwt = Self::new(&config.jwt_secret, config.jwt_leeway_secs)
            .with_issuer_audience(config.jwt_issuer.clone(), config.jwt_audience.clone())
            .with_role_claim(&config.jwt_role_claim);
        match &config.jwks {
            Some(jwks) => jwt.with_jwks(jwks),
            None => Ok(jwt),
        }
    }

    /// Also requires (and signs) these `iss` / `aud` claims.
    pub fn with_issuer_audience(
        mut self,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &issuer {
            self.validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &audience {
            Some(aud) => {
                self.validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => self.validation.validate_aud = false,
        }
        self.validation.set_required_spec_claims(&required);
        self.issuer = issuer;
        self.audience = audience;
        self
    }

    /// Signs a token for `sub` valid for `ttl_secs`.
    pub fn issue(
        &self,
        sub: &str,
        admin: bool,
        ttl_secs: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: sub.to_owned(),
            exp: chrono::Utc::now().timestamp() + ttl_secs,
            role: admin.then(|| "admin".to_owned()),
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(serde_json::Value::String),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Verifies a raw token (no `Bearer ` prefix) with the keys known now; never waits on
    /// the network.
    pub fn verify(&self, token: &str) -> Option<User> {
        match self.verdict(token) {
            Verdict::User(user) => Some(user),
            Verdict::Refused | Verdict::UnknownKey => None,
        }
    }

    /// Verifies a raw token; one signed with a key not cached waits for a refresh of the
    /// identity provider's keys (shared, rate limited) and is checked again.
    pub async fn authenticate(&self, token: &str) -> Option<User> {
        match self.verdict(token) {
            Verdict::User(user) => Some(user),
            Verdict::Refused => None,
            Verdict::UnknownKey => {
                self.jwks.as_ref()?.refresh().await;
                self.verify(token)
            }
        }
    }

    fn verdict(&self, token: &str) -> Verdict {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Verdict::Refused;
        };
        if header.alg == Algorithm::HS256 {
            return jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
                .ok()
                .and_then(|data| {
                    let admin = data.claims.role.as_deref() == Some("admin");
                    user_of(&data.claims.sub, admin)
                })
                .map_or(Verdict::Refused, Verdict::User);
        }
        let Some(jwks) = &self.jwks else {
            return Verdict::Refused;
        };
        // Keys come from the configured key set only: never from the token (`jwk`, `x5c`)
        // nor from where it points (`jku`, `x5u`); and no extension is understood (`crit`).
        if header.jku.is_some()
            || header.x5u.is_some()
            || header.jwk.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
        {
            return Verdict::Refused;
        }
        let key = match jwks.find(header.kid.as_deref()) {
            jwks::Found::Key(key) => key,
            jwks::Found::Unknown => return Verdict::UnknownKey,
        };
        if key.alg != header.alg {
            return Verdict::Refused;
        }
        let Ok(data) = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &key.validation)
        else {
            return Verdict::Refused;
        };
        let Some(sub) = data.claims.get("sub").and_then(|v| v.as_str()) else {
            return Verdict::Refused;
        };
        // A top-level claim named exactly as configured first (namespaced claims such as
        // Auth0's `https://example.com/role` contain dots), else the dotted path.
        let role = data.claims.get(self.role_claim.join(".")).or_else(|| {
            self.role_claim
                .iter()
                .try_fold(&data.claims, |value, name| value.get(name))
        });
        let admin = match role {
            Some(serde_json::Value::String(role)) => role == "admin",
            Some(serde_json::Value::Array(roles)) => roles.iter().any(|r| r == "admin"),
            _ => false,
        };
        user_of(sub, admin).map_or(Verdict::Refused, Verdict::User)
    }

    /// Turns an `Authorization` header value into a caller.
    pub async fn caller_from_header(&self, header: Option<&str>) -> Caller {
        let Some(value) = header.map(str::trim).filter(|v| !v.is_empty()) else {
            return Caller::Anonymous;
        };
        // RFC 9110: the scheme is case-insensitive, separated from the token by spaces.
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => "",
        };
        match self.authenticate(token).await {
            Some(user) => Caller::User(user),
            None => Caller::Invalid,
        }
    }
}

/// The user a verified token names. The subject is the identity exactly as issued: one with
/// surrounding spaces or control characters is refused, never trimmed into someone else's.
fn user_of(sub: &str, admin: bool) -> Option<User> {
    if sub.is_empty() || sub.len() > 200 || sub.trim() != sub || sub.chars().any(char::is_control) {
        return None;
    }
    Some(User {
        id: sub.to_owned(),
        admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(jwt: &Jwt, sub: &str) -> String {
        jwt.issue(sub, false, 60).expect("signs")
    }

    #[test]
    fn the_subject_is_used_exactly_as_issued() {
        let jwt = Jwt::new("a-secret-of-enough-length", 0);
        for bad in [" alice ", "alice ", "\talice", "ali\u{7}ce", ""] {
            assert!(jwt.verify(&signed(&jwt, bad)).is_none(), "{bad:?} accepted");
        }
        let user = jwt
            .verify(&signed(&jwt, "alice"))
            .expect("plain sub accepted");
        assert_eq!(user.id, "alice");
        let inner = jwt
            .verify(&signed(&jwt, "alice smith"))
            .expect("inner space kept");
        assert_eq!(inner.id, "alice smith");
    }

    #[tokio::test]
    async fn the_bearer_scheme_is_case_insensitive() {
        let jwt = Jwt::new("a-secret-of-enough-length", 0);
        let token = signed(&jwt, "alice");
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let header = format!("{scheme} {token}");
            assert!(
                matches!(jwt.caller_from_header(Some(&header)).await, Caller::User(u) if u.id == "alice"),
                "{scheme} refused"
            );
        }
        for header in [
            format!("Basic {token}"),
            format!("Bearer{token}"),
            token.clone(),
        ] {
            assert!(matches!(
                jwt.caller_from_header(Some(&header)).await,
                Caller::Invalid
            ));
        }
    }
}
