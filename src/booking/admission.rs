//! Who may hold seats of an event right now. The booking rules ask an [`AdmissionPolicy`]
//! before every hold; the waiting room (`crate::waiting_room`) is the one there is. It is a
//! trait here, so the waiting room can sit on top of the booking service without a cycle.

use async_trait::async_trait;

use crate::auth::User;
use crate::error::AppError;

/// How a hold request reached the booking rules.
#[derive(Clone, Copy, Debug)]
pub enum Admission<'a> {
    /// Directly from a client, with the admission token it sent, if any.
    Direct(Option<&'a str>),
    /// From the event's request queue: admitted when it was queued, applied by the worker
    /// holding the queue's lease with this fencing token (`crate::db::fence`).
    Queued { fence: i64 },
}

impl Admission<'_> {
    /// The queue lease's fencing token the hold's transaction must pass, if queued.
    pub fn fence(self) -> Option<i64> {
        match self {
            Self::Direct(_) => None,
            Self::Queued { fence } => Some(fence),
        }
    }
}

/// Decides whether `user` may hold seats of `event_id` with `token`.
#[async_trait]
pub trait AdmissionPolicy: Send + Sync {
    /// `Ok` to let the hold go on; `FORBIDDEN` (saying why) otherwise.
    async fn admit(&self, user: &User, event_id: i64, token: Option<&str>) -> Result<(), AppError>;
}
