//! The organizer's back office: an event's bookings and holds as connections, the sales
//! report and the CSV export. Admin only: every entry point here checks the caller itself.

pub mod connections;
pub mod door;
pub mod export;
pub mod report;

use crate::auth::Caller;
use crate::booking::BookingService;
use crate::booking::events::Viewer;
use crate::error::AppError;
use entity::event;

impl BookingService {
    /// The stored event, for an admin (`UNAUTHENTICATED`/`FORBIDDEN` for anyone else,
    /// `NOT_FOUND` if unknown; admins see DRAFT events too).
    pub async fn admin_event(
        &self,
        caller: &Caller,
        event_id: i64,
    ) -> Result<event::Model, AppError> {
        caller.admin()?;
        self.visible_event(event_id, Viewer::Admin).await
    }
}
