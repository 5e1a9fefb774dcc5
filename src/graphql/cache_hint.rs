//! How long an answer stays true with nothing committed. Resolvers whose answer would change
//! by the clock alone (a shown hold runs out, a sales window opens) narrow it; the HTTP read
//! cache ([`crate::http`]) keeps a stored answer no longer than this.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Attached to a request as data; shared by every resolver of it.
#[derive(Clone, Debug)]
pub struct CacheHint(Arc<AtomicI64>);

impl CacheHint {
    /// No limit yet: only a committed change alters the answer.
    pub fn unlimited() -> Self {
        Self(Arc::new(AtomicI64::new(i64::MAX)))
    }

    /// The answer reads differently from `at_ms` (Unix ms) on.
    pub fn changes_at(&self, at_ms: i64) {
        self.0.fetch_min(at_ms, Ordering::Relaxed);
    }

    /// The first instant (Unix ms) the answer may read differently; `i64::MAX`: none.
    pub fn valid_until(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}
