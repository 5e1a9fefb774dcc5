//! Automatic persisted queries (Apollo's APQ protocol): a client sends
//! `extensions.persistedQuery = {version: 1, sha256Hash}` instead of the query text; the
//! first time the server does not know the hash it answers `PERSISTED_QUERY_NOT_FOUND` and
//! the client sends the text with the hash once, which the server checks and keeps. With the
//! text gone from the request, a `GET /graphql` fits in a URL a browser or CDN can cache.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::{ErrorExtensionValues, Request, ServerError, Value};
use lru::LruCache;
use sha2::{Digest, Sha256};

/// Query texts kept by hash (least recently used dropped first).
const CAPACITY: NonZeroUsize = NonZeroUsize::new(4_096).expect("non-zero");

/// The query texts the server has been sent, by sha256; cheap to clone.
#[derive(Clone)]
pub struct PersistedQueries(Arc<Mutex<LruCache<String, Arc<str>>>>);

impl Default for PersistedQueries {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(LruCache::new(CAPACITY))))
    }
}

impl PersistedQueries {
    /// Fills in the query text of a request that names it by hash, or keeps the text a
    /// request brings with its hash. A request without `persistedQuery` is left as it is.
    pub fn resolve(&self, request: &mut Request) -> Result<(), ServerError> {
        let Some(persisted) = request.extensions.0.get("persistedQuery") else {
            return Ok(());
        };
        let (version, hash) = match persisted {
            Value::Object(fields) => (fields.get("version"), fields.get("sha256Hash")),
            _ => (None, None),
        };
        if !matches!(version, Some(Value::Number(n)) if n.as_u64() == Some(1)) {
            return Err(bad_input("persistedQuery: only version 1 is supported"));
        }
        let Some(Value::String(hash)) = hash else {
            return Err(bad_input("persistedQuery: sha256Hash is missing"));
        };
        let hash = hash.to_ascii_lowercase();
        if request.query.is_empty() {
            let known = self
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&hash)
                .cloned();
            let Some(query) = known else {
                let mut err = ServerError::new("PersistedQueryNotFound", None);
                let mut ext = ErrorExtensionValues::default();
                ext.set("code", "PERSISTED_QUERY_NOT_FOUND");
                err.extensions = Some(ext);
                return Err(err);
            };
            request.query = query.to_string();
            return Ok(());
        }
        if hex::encode(Sha256::digest(request.query.as_bytes())) != hash {
            return Err(bad_input(
                "persistedQuery: sha256Hash is not the hash of the query",
            ));
        }
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(hash, Arc::from(request.query.as_str()));
        Ok(())
    }
}

fn bad_input(message: &str) -> ServerError {
    let mut err = ServerError::new(message, None);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", "BAD_USER_INPUT");
    err.extensions = Some(ext);
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::Name;

    fn with_hash(query: &str, hash: &str) -> Request {
        let mut request = Request::new(query);
        let mut persisted = async_graphql::indexmap::IndexMap::new();
        persisted.insert(Name::new("version"), Value::from(1));
        persisted.insert(Name::new("sha256Hash"), Value::from(hash));
        request
            .extensions
            .0
            .insert("persistedQuery".into(), Value::Object(persisted));
        request
    }

    #[test]
    fn unknown_hash_then_registered_then_served_by_hash() {
        let store = PersistedQueries::default();
        let query = "{ events { id } }";
        let hash = hex::encode(Sha256::digest(query.as_bytes()));
        let err = store
            .resolve(&mut with_hash("", &hash))
            .expect_err("unknown hash");
        assert_eq!(err.message, "PersistedQueryNotFound");
        store
            .resolve(&mut with_hash(query, &hash))
            .expect("text with its hash is kept");
        let mut by_hash = with_hash("", &hash.to_ascii_uppercase());
        store.resolve(&mut by_hash).expect("known hash");
        assert_eq!(by_hash.query, query);
    }

    #[test]
    fn a_hash_that_is_not_the_querys_is_refused() {
        let store = PersistedQueries::default();
        let err = store
            .resolve(&mut with_hash("{ events { id } }", &"0".repeat(64)))
            .expect_err("mismatch");
        assert!(err.message.contains("not the hash"), "{}", err.message);
    }
}
