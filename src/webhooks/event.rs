//! What a webhook says: the event types, their `data`, and [`record`], which writes an event
//! and its deliveries into the transaction of the change it describes (the durable outbox).

use crate::domain::area::HoldAreaView;
use chrono::{SecondsFormat, TimeZone, Utc};
use sea_orm::{ActiveEnum, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde::Serialize;

use crate::domain::clock::now_ms;
use crate::domain::status::{BookingStatus, EventStatus};
use crate::error::AppError;
use entity::webhook_delivery::WebhookDeliveryStatus;
use entity::{booking, webhook_delivery, webhook_endpoint, webhook_event};

/// The types an endpoint can subscribe to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    BookingConfirmed,
    BookingCancelled,
    BookingRefunded,
    EventStatusChanged,
    TicketCheckedIn,
}

impl EventType {
    pub const ALL: [Self; 5] = [
        Self::BookingConfirmed,
        Self::BookingCancelled,
        Self::BookingRefunded,
        Self::EventStatusChanged,
        Self::TicketCheckedIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BookingConfirmed => "booking.confirmed",
            Self::BookingCancelled => "booking.cancelled",
            Self::BookingRefunded => "booking.refunded",
            Self::EventStatusChanged => "event.status_changed",
            Self::TicketCheckedIn => "ticket.checked_in",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The type that tells of a booking reaching `status`.
    pub fn of_booking_status(status: BookingStatus) -> Self {
        match status {
            BookingStatus::Confirmed => Self::BookingConfirmed,
            BookingStatus::Cancelled => Self::BookingCancelled,
            BookingStatus::Refunded => Self::BookingRefunded,
        }
    }
}

/// A time as webhooks write it: RFC 3339, UTC, milliseconds.
pub fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One general-admission line of a booking.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AreaLine {
    pub area_id: String,
    pub quantity: i64,
    pub price_cents: i64,
}

/// The `data` of the booking types.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingData {
    pub id: String,
    pub event_id: String,
    pub user_id: String,
    pub status: String,
    pub total_cents: i64,
    pub seat_ids: Vec<String>,
    pub areas: Vec<AreaLine>,
    pub created_at: String,
}

impl BookingData {
    /// The booking `b` as it is now, with its seats and general-admission lines.
    pub fn of(b: &booking::Model, seat_ids: &[i64], areas: &[HoldAreaView]) -> Self {
        Self {
            id: b.id.clone(),
            event_id: b.event_id.to_string(),
            user_id: b.user_id.clone(),
            status: b.status.to_value(),
            total_cents: b.total_cents,
            seat_ids: seat_ids.iter().map(i64::to_string).collect(),
            areas: areas
                .iter()
                .map(|l| AreaLine {
                    area_id: l.area_id.to_string(),
                    quantity: l.quantity,
                    price_cents: l.price_cents,
                })
                .collect(),
            created_at: rfc3339(b.created_at_ms),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusChangeData {
    event_id: String,
    from: String,
    to: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckInData {
    ticket_id: String,
    booking_id: String,
    event_id: String,
    checked_in_at: String,
}

/// A change to tell the subscribed endpoints about.
#[derive(Clone, Debug)]
pub struct WebhookEvent {
    pub event_type: EventType,
    /// The onsale event it belongs to.
    pub event_id: i64,
    pub data: serde_json::Value,
}

impl WebhookEvent {
    /// `booking.confirmed`, `booking.cancelled` or `booking.refunded`, by the booking's status.
    pub fn booking(data: BookingData, status: BookingStatus, event_id: i64) -> Self {
        Self {
            event_type: EventType::of_booking_status(status),
            event_id,
            data: to_value(&data),
        }
    }

    /// `event.status_changed`.
    pub fn event_status_changed(event_id: i64, from: EventStatus, to: EventStatus) -> Self {
        Self {
            event_type: EventType::EventStatusChanged,
            event_id,
            data: to_value(&StatusChangeData {
                event_id: event_id.to_string(),
                from: from.to_value(),
                to: to.to_value(),
            }),
        }
    }

    /// `ticket.checked_in`: for the door's `checkIn`, inside its transaction.
    pub fn ticket_checked_in(
        ticket_id: &str,
        booking_id: &str,
        event_id: i64,
        checked_in_at_ms: i64,
    ) -> Self {
        Self {
            event_type: EventType::TicketCheckedIn,
            event_id,
            data: to_value(&CheckInData {
                ticket_id: ticket_id.to_owned(),
                booking_id: booking_id.to_owned(),
                event_id: event_id.to_string(),
                checked_in_at: rfc3339(checked_in_at_ms),
            }),
        }
    }
}

fn to_value(data: &impl Serialize) -> serde_json::Value {
    // Plain structs of strings and numbers always serialise.
    serde_json::to_value(data).unwrap_or_default()
}

/// The body every delivery of one event sends, fields in the contract's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    created_at: String,
    data: &'a serde_json::Value,
}

/// Whether an endpoint storing `events` (a JSON array, `[]`: all) wants `event_type`.
pub(super) fn subscribes(events: &[String], event_type: EventType) -> bool {
    events.is_empty() || events.iter().any(|e| e == event_type.as_str())
}

/// The event types an endpoint row stores (a JSON array).
pub(super) fn stored_events(row: &webhook_endpoint::Model) -> Result<Vec<String>, AppError> {
    serde_json::from_str(&row.events).map_err(|e| {
        AppError::Internal(format!(
            "webhook endpoint {} has unreadable events {:?}: {e}",
            row.id, row.events
        ))
    })
}

/// Writes `event` and one PENDING delivery per enabled endpoint subscribed to its type,
/// inside `txn` — the transaction of the change, so the event exists exactly when the change
/// does. With no endpoint subscribed nothing is written.
pub async fn record<C: ConnectionTrait>(txn: &C, event: WebhookEvent) -> Result<(), AppError> {
    let endpoints = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(txn)
        .await?;
    let mut subscribed = Vec::new();
    for endpoint in endpoints {
        if subscribes(&stored_events(&endpoint)?, event.event_type) {
            subscribed.push(endpoint.id);
        }
    }
    if subscribed.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let id = uuid::Uuid::new_v4().to_string();
    let payload = serde_json::to_string(&Body {
        id: &id,
        event_type: event.event_type.as_str(),
        created_at: rfc3339(now),
        data: &event.data,
    })
    .map_err(|e| AppError::Internal(format!("webhook body: {e}")))?;
    webhook_event::Entity::insert(webhook_event::ActiveModel {
        id: Set(id.clone()),
        event_type: Set(event.event_type.as_str().to_owned()),
        event_id: Set(Some(event.event_id)),
        payload: Set(payload),
        created_at_ms: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    webhook_delivery::Entity::insert_many(subscribed.into_iter().map(|endpoint_id| {
        webhook_delivery::ActiveModel {
            id: Set(uuid::Uuid::new_v4().to_string()),
            endpoint_id: Set(endpoint_id),
            webhook_event_id: Set(id.clone()),
            event_type: Set(event.event_type.as_str().to_owned()),
            status: Set(WebhookDeliveryStatus::Pending),
            attempts: Set(0),
            last_status_code: Set(None),
            last_error: Set(None),
            next_attempt_at_ms: Set(now),
            lease_until_ms: Set(None),
            leased_by: Set(None),
            lease_token: Set(None),
            created_at_ms: Set(now),
            updated_at_ms: Set(now),
        }
    }))
    .exec_without_returning(txn)
    .await?;
    tracing::debug!(webhook.id = %id, r#type = event.event_type.as_str(), "webhook event recorded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_read_back_and_empty_subscribes_to_all() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("booking.created"), None);
        assert!(subscribes(&[], EventType::TicketCheckedIn));
        let only = vec!["booking.confirmed".to_owned()];
        assert!(subscribes(&only, EventType::BookingConfirmed));
        assert!(!subscribes(&only, EventType::BookingCancelled));
    }

    #[test]
    fn times_are_rfc3339_utc_with_millis() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
