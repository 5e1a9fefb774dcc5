//! Bearer tokens the bench signs for itself: HS256 with the server's `JWT_SECRET`.

use anyhow::Context as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// Tokens live long enough for any run.
const TTL_SECS: i64 = 3 * 3600;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

/// Signs tokens with one secret.
#[derive(Clone)]
pub struct Tokens {
    key: EncodingKey,
}

impl Tokens {
    pub fn new(secret: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
        }
    }

    /// A customer token for `sub`.
    pub fn user(&self, sub: &str) -> anyhow::Result<String> {
        self.sign(sub, None)
    }

    /// An admin token (`role: "admin"`), needed for `createEvent`.
    pub fn admin(&self, sub: &str) -> anyhow::Result<String> {
        self.sign(sub, Some("admin"))
    }

    fn sign(&self, sub: &str, role: Option<&str>) -> anyhow::Result<String> {
        let claims = Claims {
            sub,
            exp: chrono::Utc::now().timestamp() + TTL_SECS,
            role,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .context("cannot sign a token")
    }
}
