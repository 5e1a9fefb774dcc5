//! Registering webhook endpoints (admin only): create with a fresh secret shown once, update
//! (URL, event types, enabled), rotate the secret, delete, list.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use tracing::instrument;

use super::event::{EventType, stored_events};
use super::signature::new_secret;
use super::{WebhookService, address};
use crate::auth::Caller;
use crate::domain::clock::now_ms;
use crate::error::AppError;
use entity::webhook_endpoint;

/// An endpoint as admins see it; `secret` only in the answer that creates or rotates it.
#[derive(Clone, Debug)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: Option<String>,
    pub enabled: bool,
}

impl EndpointView {
    fn of(row: webhook_endpoint::Model, show_secret: bool) -> Result<Self, AppError> {
        let events = stored_events(&row)?;
        Ok(Self {
            id: row.id,
            url: row.url,
            events,
            secret: show_secret.then_some(row.secret),
            enabled: row.enabled,
        })
    }
}

/// The event types asked for, known and without repeats, as stored (`[]`: every type).
fn event_types(events: &[String]) -> Result<String, AppError> {
    let mut types: Vec<&'static str> = Vec::new();
    for e in events {
        let t = EventType::parse(e.trim()).ok_or_else(|| {
            let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            AppError::BadInput(format!(
                "unknown webhook event type {e:?}; known: {}",
                known.join(", ")
            ))
        })?;
        if !types.contains(&t.as_str()) {
            types.push(t.as_str());
        }
    }
    serde_json::to_string(&types).map_err(|e| AppError::Internal(format!("event types: {e}")))
}

impl WebhookService {
    async fn stored_endpoint(&self, id: &str) -> Result<webhook_endpoint::Model, AppError> {
        webhook_endpoint::Entity::find_by_id(id.to_owned())
            .one(&self.db.conn)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("webhook endpoint {id} does not exist")))
    }

    /// Registers `url` for `events` (`[]`: every type), enabled, with a fresh secret.
    #[instrument(skip_all, err(level = "debug"))]
    pub async fn create_endpoint(
        &self,
        caller: &Caller,
        url: &str,
        events: &[String],
    ) -> Result<EndpointView, AppError> {
        caller.admin()?;
        let url = address::check_url(url, self.settings.allow_private).await?;
        let events = event_types(events)?;
        let now = now_ms();
        let row = webhook_endpoint::Model {
            id: uuid::Uuid::new_v4().to_string(),
            url: url.to_string(),
            events,
            secret: new_secret(),
            enabled: true,
            created_at_ms: now,
            updated_at_ms: now,
        };
        webhook_endpoint::Entity::insert(webhook_endpoint::ActiveModel {
            id: Set(row.id.clone()),
            url: Set(row.url.clone()),
            events: Set(row.events.clone()),
            secret: Set(row.secret.clone()),
            enabled: Set(row.enabled),
            created_at_ms: Set(now),
            updated_at_ms: Set(now),
        })
        .exec_without_returning(&self.db.conn)
        .await?;
        tracing::info!(webhook.endpoint = %row.id, url = %row.url, "webhook endpoint created");
        EndpointView::of(row, true)
    }

    /// Changes what is given of an endpoint's URL, event types and enabled flag.
    #[instrument(skip_all, fields(webhook.endpoint = %id), err(level = "debug"))]
    pub async fn update_endpoint(
        &self,
        caller: &Caller,
        id: &str,
        url: Option<&str>,
        events: Option<&[String]>,
        enabled: Option<bool>,
    ) -> Result<EndpointView, AppError> {
        caller.admin()?;
        self.stored_endpoint(id).await?;
        let mut update = webhook_endpoint::Entity::update_many()
            .col_expr(webhook_endpoint::Column::UpdatedAtMs, Expr::value(now_ms()))
            .filter(webhook_endpoint::Column::Id.eq(id));
        if let Some(url) = url {
            let url = address::check_url(url, self.settings.allow_private).await?;
            update = update.col_expr(webhook_endpoint::Column::Url, Expr::value(url.to_string()));
        }
        if let Some(events) = events {
            update = update.col_expr(
                webhook_endpoint::Column::Events,
                Expr::value(event_types(events)?),
            );
        }
        if let Some(enabled) = enabled {
            update = update.col_expr(webhook_endpoint::Column::Enabled, Expr::value(enabled));
        }
        update.exec(&self.db.conn).await?;
        EndpointView::of(self.stored_endpoint(id).await?, false)
    }

    /// Gives an endpoint a fresh secret; later attempts (retries included) sign with it.
    #[instrument(skip_all, fields(webhook.endpoint = %id), err(level = "debug"))]
    pub async fn rotate_secret(&self, caller: &Caller, id: &str) -> Result<EndpointView, AppError> {
        caller.admin()?;
        self.stored_endpoint(id).await?;
        webhook_endpoint::Entity::update_many()
            .col_expr(webhook_endpoint::Column::Secret, Expr::value(new_secret()))
            .col_expr(webhook_endpoint::Column::UpdatedAtMs, Expr::value(now_ms()))
            .filter(webhook_endpoint::Column::Id.eq(id))
            .exec(&self.db.conn)
            .await?;
        tracing::info!(webhook.endpoint = %id, "webhook secret rotated");
        EndpointView::of(self.stored_endpoint(id).await?, true)
    }

    /// Deletes an endpoint and its deliveries (`NOT_FOUND` if there is none).
    #[instrument(skip_all, fields(webhook.endpoint = %id), err(level = "debug"))]
    pub async fn delete_endpoint(&self, caller: &Caller, id: &str) -> Result<bool, AppError> {
        caller.admin()?;
        let deleted = webhook_endpoint::Entity::delete_by_id(id.to_owned())
            .exec(&self.db.conn)
            .await?;
        if deleted.rows_affected == 0 {
            return Err(AppError::NotFound(format!(
                "webhook endpoint {id} does not exist"
            )));
        }
        tracing::info!(webhook.endpoint = %id, "webhook endpoint deleted");
        Ok(true)
    }

    /// Every endpoint, oldest first, without secrets.
    pub async fn endpoints(&self, caller: &Caller) -> Result<Vec<EndpointView>, AppError> {
        caller.admin()?;
        webhook_endpoint::Entity::find()
            .order_by_asc(webhook_endpoint::Column::CreatedAtMs)
            .order_by_asc(webhook_endpoint::Column::Id)
            .all(&self.db.conn)
            .await?
            .into_iter()
            .map(|row| EndpointView::of(row, false))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_known_and_kept_once() {
        let asked = [
            "booking.confirmed".to_owned(),
            "booking.confirmed".to_owned(),
        ];
        assert_eq!(
            event_types(&asked).expect("known"),
            r#"["booking.confirmed"]"#
        );
        assert_eq!(event_types(&[]).expect("all"), "[]");
        assert!(event_types(&["booking.created".to_owned()]).is_err());
    }
}
