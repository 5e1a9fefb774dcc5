//! Pacing admissions, and following one ticket's standing for `queueStatus`.

use std::time::Duration;

use futures::Stream;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::standing::standing;
use super::store::{RoomKeys, RoomSnapshot, TicketState};
use super::{QueueStatusView, WaitingRoomService};
use crate::auth::User;
use crate::error::AppError;

/// How often each instance runs a pacing step for every open room.
pub const TICK: Duration = Duration::from_millis(100);
/// Most Redis time one step may turn into credit: a late step (a busy instance) still lets
/// in what was due, but a long pause (a lost Redis, every instance down) never ends in a
/// burst of more than a second's worth.
const MAX_STEP_MS: i64 = 1_000;
/// How often a follower asks Redis itself when the room does not seem to move.
const RECHECK: Duration = Duration::from_secs(1);

impl WaitingRoomService {
    pub(super) async fn run_pacer(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = shutdown.changed() => if changed.is_err() { break },
            }
            if *shutdown.borrow() {
                break;
            }
            self.pace_once().await;
        }
        tracing::debug!("waiting-room pacer stopped");
    }

    /// One pacing step for every room that is on; publishes what each step saw.
    async fn pace_once(&self) {
        let Ok(store) = self.store() else { return };
        let rooms = match self.inner.rooms.enabled_rooms().await {
            Ok(rooms) => rooms,
            Err(err) => {
                tracing::debug!(error = %err, "waiting-room pacer cannot read the rooms");
                return;
            }
        };
        for room in rooms {
            let keys = RoomKeys::new(&room.queue_key);
            let snapshot = store
                .pace(&keys, room.opens_at_ms, room.admit_per_sec, MAX_STEP_MS)
                .await
                .ok();
            if let Some(s) = snapshot
                && s.let_in > 0
            {
                metrics::counter!("onsale_waiting_room_admitted_total")
                    .increment(s.let_in.unsigned_abs());
                tracing::debug!(
                    event.id = room.event_id,
                    let_in = s.let_in,
                    admitted = s.admitted_upto,
                    "admitted the next people"
                );
            }
            self.publish_snapshot(room.event_id, snapshot);
        }
        let mut snapshots = self
            .inner
            .snapshots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        snapshots.retain(|_, sender| sender.receiver_count() > 0);
    }

    fn publish_snapshot(&self, event_id: i64, snapshot: Option<RoomSnapshot>) {
        let snapshots = self
            .inner
            .snapshots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sender) = snapshots.get(&event_id) {
            sender.send_replace(snapshot);
        }
    }

    /// Follows a ticket: its standing now, then each time its position changes, and finally
    /// its admission (with the token), where the stream ends. Only the ticket's owner may.
    #[tracing::instrument(skip_all, fields(user.id = %user.id), err(level = "debug"))]
    pub async fn follow(
        &self,
        user: &User,
        ticket_id: &str,
    ) -> Result<impl Stream<Item = Result<QueueStatusView, AppError>> + Send + use<>, AppError>
    {
        let ticket = self.inner.tokens.verify_ticket(ticket_id.trim())?;
        if ticket.user_id != user.id {
            return Err(AppError::Forbidden(
                "this queue ticket belongs to someone else".into(),
            ));
        }
        let room = self
            .inner
            .rooms
            .get(ticket.event_id)
            .await?
            .ok_or_else(|| AppError::NotFound("this queue ticket does not exist".into()))?;
        self.store()?;
        let mut rx = self.watch_room(ticket.event_id);
        let this = self.clone();
        let ticket_id = ticket_id.trim().to_owned();
        Ok(async_stream::stream! {
            let keys = RoomKeys::new(&room.queue_key);
            let mut state: Option<TicketState> = None;
            let mut last = None;
            let mut reported_down = false;
            let mut fresh = false;
            loop {
                let room = match this.inner.rooms.recent(ticket.event_id).await {
                    Ok(Some(current)) => current,
                    _ => room.clone(),
                };
                // Cheap updates come from this instance's pacing steps; the ticket's own
                // place is looked up in Redis only when it may have changed: at the
                // lottery, at its admission, or when the room seems to stand still.
                let snapshot = *rx.borrow_and_update();
                let local = fresh
                    && match (&mut state, snapshot) {
                        // A step in another epoch (Redis lost the room) says nothing of this ticket.
                        (Some(st), Some(sn)) if st.epoch != sn.epoch => false,
                        (Some(st), Some(sn)) if st.queue_number > 0 && sn.admitted_upto < st.queue_number => {
                            st.admitted_upto = sn.admitted_upto;
                            st.tail = sn.tail;
                            st.now_ms = sn.now_ms;
                            true
                        }
                        (Some(st), Some(sn)) if st.queue_number == 0 && !sn.opened => {
                            st.lobby_joined = sn.lobby_joined;
                            st.now_ms = sn.now_ms;
                            true
                        }
                        _ => false,
                    };
                if !local {
                    let looked_up = match this.store() {
                        Ok(store) => store.status(&keys, &ticket.user_id, &ticket.tk, ticket.epoch).await,
                        Err(err) => Err(err),
                    };
                    match looked_up {
                        Ok(Some(st)) => {
                            state = Some(st);
                            reported_down = false;
                        }
                        Ok(None) => {
                            yield Err(AppError::NotFound(
                                "this queue ticket does not exist: the waiting room lost its queue \
                                 and started again, so tickets from before do not count; join the \
                                 queue again with joinQueue"
                                    .into(),
                            ));
                            break;
                        }
                        Err(err) => {
                            if !reported_down {
                                reported_down = true;
                                yield Err(err);
                            }
                        }
                    }
                }
                if let Some(st) = &state {
                    let standing = standing(st, &room);
                    let shown = (standing.position, standing.admitted, standing.waiting_for_opening);
                    if last != Some(shown) {
                        last = Some(shown);
                        match this.admission_token(&room, &ticket.user_id, &ticket.tk, st.epoch, &standing) {
                            Ok(admission_token) => yield Ok(QueueStatusView {
                                ticket_id: ticket_id.clone(),
                                standing: standing.clone(),
                                admission_token,
                            }),
                            Err(err) => {
                                yield Err(err);
                                break;
                            }
                        }
                    }
                    if standing.admitted {
                        break;
                    }
                }
                fresh = match tokio::time::timeout(RECHECK, rx.changed()).await {
                    Ok(Ok(())) => true,
                    Ok(Err(_)) => {
                        tokio::time::sleep(RECHECK).await;
                        false
                    }
                    Err(_) => false,
                };
            }
        })
    }
}
