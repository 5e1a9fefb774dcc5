//! Queue tickets and admissions: HS256 tokens bound to one user and one event.
//!
//! They are signed with a key derived from `JWT_SECRET` (HMAC of a fixed label), never with
//! the secret itself, and carry no `sub`: neither can ever pass as a bearer token. Both are
//! deterministic (no issue time inside), so asking twice yields the very same string. Both
//! carry the room's epoch, the life of its Redis state they were issued in: after Redis loses
//! that state, neither counts any more.

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::AppError;

const TICKET: &str = "queue-ticket";
const ADMISSION: &str = "admission";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    typ: String,
    /// The event.
    evt: i64,
    /// The user.
    uid: String,
    /// Which of the user's tickets for this event (`L<n>`: joined the lobby before the
    /// opening as its n-th arrival; `Q<n>`: queue number n).
    tkt: String,
    /// The room's epoch at issue (absent from tokens made before epochs existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epc: Option<i64>,
    /// Admissions only: end of the admission window, Unix seconds (for clients) …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    /// … and in milliseconds (what is checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until_ms: Option<i64>,
}

/// A verified queue ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub event_id: i64,
    pub user_id: String,
    /// The ticket's place in the room's Redis state (see [`Claims::tkt`]).
    pub tk: String,
    /// The room's epoch it was issued in.
    pub epoch: Option<i64>,
}

/// A verified admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub event_id: i64,
    pub user_id: String,
    pub until_ms: i64,
    /// The room's epoch it was issued in.
    pub epoch: Option<i64>,
}

/// Why an admission token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionRefusal {
    Invalid,
    OtherEventOrUser,
    Expired { until_ms: i64 },
}

/// Signs and verifies tickets and admissions.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub fn new(jwt_secret: &str) -> Self {
        let key = derive_key(jwt_secret);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims::<&str>(&[]);
        validation.validate_exp = false;
        validation.validate_aud = false;
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        }
    }

    /// The ticket id for `user`'s ticket `tk` in `event_id`'s queue, in the room's `epoch`.
    pub fn ticket(
        &self,
        event_id: i64,
        user_id: &str,
        tk: &str,
        epoch: i64,
    ) -> Result<String, AppError> {
        self.sign(&Claims {
            typ: TICKET.into(),
            evt: event_id,
            uid: user_id.to_owned(),
            tkt: tk.to_owned(),
            epc: Some(epoch),
            exp: None,
            until_ms: None,
        })
    }

    /// The admission of ticket `tk` in the room's `epoch`, valid until `until_ms`.
    pub fn admission(
        &self,
        event_id: i64,
        user_id: &str,
        tk: &str,
        epoch: i64,
        until_ms: i64,
    ) -> Result<String, AppError> {
        self.sign(&Claims {
            typ: ADMISSION.into(),
            evt: event_id,
            uid: user_id.to_owned(),
            tkt: tk.to_owned(),
            epc: Some(epoch),
            exp: Some(until_ms.div_euclid(1000)),
            until_ms: Some(until_ms),
        })
    }

    /// The ticket behind a ticket id; `NOT_FOUND` if it is not one of ours.
    pub fn verify_ticket(&self, raw: &str) -> Result<Ticket, AppError> {
        match self.decode(raw) {
            Some(c) if c.typ == TICKET => Ok(Ticket {
                event_id: c.evt,
                user_id: c.uid,
                tk: c.tkt,
                epoch: c.epc,
            }),
            _ => Err(AppError::NotFound(
                "this queue ticket does not exist".into(),
            )),
        }
    }

    /// Checks an admission for `user_id` and `event_id` at `now_ms`.
    pub fn verify_admission(
        &self,
        raw: &str,
        event_id: i64,
        user_id: &str,
        now_ms: i64,
    ) -> Result<Admission, AdmissionRefusal> {
        let claims = self
            .decode(raw.trim())
            .filter(|c| c.typ == ADMISSION)
            .ok_or(AdmissionRefusal::Invalid)?;
        let until_ms = claims.until_ms.ok_or(AdmissionRefusal::Invalid)?;
        if claims.evt != event_id || claims.uid != user_id {
            return Err(AdmissionRefusal::OtherEventOrUser);
        }
        if now_ms >= until_ms {
            return Err(AdmissionRefusal::Expired { until_ms });
        }
        Ok(Admission {
            event_id,
            user_id: claims.uid,
            until_ms,
            epoch: claims.epc,
        })
    }

    fn sign(&self, claims: &Claims) -> Result<String, AppError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| AppError::Internal(format!("cannot sign a waiting-room token: {e}")))
    }

    fn decode(&self, raw: &str) -> Option<Claims> {
        if raw.len() > 2_000 {
            return None;
        }
        jsonwebtoken::decode::<Claims>(raw, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

fn derive_key(secret: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail; fall back to a plain hash anyway.
    match <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(b"onsale waiting room tokens v1");
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => {
            use sha2::Digest;
            Sha256::digest(format!("onsale waiting room tokens v1:{secret}")).to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_deterministic_and_bound() {
        let tokens = Tokens::new("a-secret-of-sixteen-chars");
        let a = tokens.ticket(7, "alice", "Q12", 42).expect("sign");
        assert_eq!(a, tokens.ticket(7, "alice", "Q12", 42).expect("sign"));
        assert_ne!(a, tokens.ticket(7, "alice", "Q12", 43).expect("sign"));
        let t = tokens.verify_ticket(&a).expect("verify");
        assert_eq!(
            (t.event_id, t.user_id.as_str(), t.tk.as_str(), t.epoch),
            (7, "alice", "Q12", Some(42))
        );
        let other = Tokens::new("another-secret-of-16-chars");
        assert!(other.verify_ticket(&a).is_err());
    }

    #[test]
    fn admissions_are_scoped_and_expire() {
        let tokens = Tokens::new("a-secret-of-sixteen-chars");
        let adm = tokens
            .admission(7, "alice", "Q1", 42, 10_000)
            .expect("sign");
        assert_eq!(
            tokens
                .verify_admission(&adm, 7, "alice", 9_999)
                .map(|a| a.epoch),
            Ok(Some(42))
        );
        assert_eq!(
            tokens.verify_admission(&adm, 8, "alice", 0),
            Err(AdmissionRefusal::OtherEventOrUser)
        );
        assert_eq!(
            tokens.verify_admission(&adm, 7, "bob", 0),
            Err(AdmissionRefusal::OtherEventOrUser)
        );
        assert_eq!(
            tokens.verify_admission(&adm, 7, "alice", 10_000),
            Err(AdmissionRefusal::Expired { until_ms: 10_000 })
        );
        // A ticket is not an admission, and neither is a bearer token.
        let ticket = tokens.ticket(7, "alice", "Q1", 42).expect("sign");
        assert_eq!(
            tokens.verify_admission(&ticket, 7, "alice", 0),
            Err(AdmissionRefusal::Invalid)
        );
        let bearer = crate::auth::Jwt::new("a-secret-of-sixteen-chars", 0)
            .issue("alice", false, 60)
            .expect("bearer");
        assert_eq!(
            tokens.verify_admission(&bearer, 7, "alice", 0),
            Err(AdmissionRefusal::Invalid)
        );
        // And an admission is not a bearer token.
        assert!(
            crate::auth::Jwt::new("a-secret-of-sixteen-chars", 0)
                .verify(&adm)
                .is_none()
        );
    }
}
