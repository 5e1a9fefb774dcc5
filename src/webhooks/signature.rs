//! The `Onsale-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, keyed
//! with the secret's UTF-8 bytes. The time is signed too, so receivers can refuse replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::AppError;

/// The header value for `body` sent at `t` (Unix seconds) with `secret`.
pub fn header(secret: &str, t: i64, body: &str) -> Result<String, AppError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|e| AppError::Internal(format!("webhook signing key: {e}")))?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Ok(format!(
        "t={t},v1={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// A fresh endpoint secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    format!("whsec_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_time_dot_body() {
        let h = header("whsec_x", 1_700_000_000, r#"{"a":1}"#).expect("signs");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_x").expect("any key");
        mac.update(br#"1700000000.{"a":1}"#);
        let want = hex::encode(mac.finalize().into_bytes());
        assert_eq!(h, format!("t=1700000000,v1={want}"));
        assert_ne!(
            header("whsec_y", 1_700_000_000, r#"{"a":1}"#).expect("signs"),
            h
        );
    }

    #[test]
    fn secrets_are_fresh_and_long() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("whsec_") && a.len() == 6 + 64);
    }
}
