//! Bearer tokens: HS256 JWTs with `sub`, `exp` and an optional `role`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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

/// Signs and verifies tokens with one secret.
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
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

    /// Verifies a raw token (no `Bearer ` prefix).
    pub fn verify(&self, token: &str) -> Option<User> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        // The subject is the identity exactly as issued: one with surrounding spaces or
        // control characters is refused, never trimmed into someone else's.
        let sub = data.claims.sub.as_str();
        if sub.is_empty()
            || sub.len() > 200
            || sub.trim() != sub
            || sub.chars().any(char::is_control)
        {
            return None;
        }
        Some(User {
            id: sub.to_owned(),
            admin: data.claims.role.as_deref() == Some("admin"),
        })
    }

    /// Turns an `Authorization` header value into a caller.
    pub fn caller_from_header(&self, header: Option<&str>) -> Caller {
        let Some(value) = header.map(str::trim).filter(|v| !v.is_empty()) else {
            return Caller::Anonymous;
        };
        // RFC 9110: the scheme is case-insensitive, separated from the token by spaces.
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => "",
        };
        match self.verify(token) {
            Some(user) => Caller::User(user),
            None => Caller::Invalid,
        }
    }
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

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let jwt = Jwt::new("a-secret-of-enough-length", 0);
        let token = signed(&jwt, "alice");
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let header = format!("{scheme} {token}");
            assert!(
                matches!(jwt.caller_from_header(Some(&header)), Caller::User(u) if u.id == "alice"),
                "{scheme} refused"
            );
        }
        for header in [
            format!("Basic {token}"),
            format!("Bearer{token}"),
            token.clone(),
        ] {
            assert!(matches!(
                jwt.caller_from_header(Some(&header)),
                Caller::Invalid
            ));
        }
    }
}
