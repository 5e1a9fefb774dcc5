//! Outbound webhooks (admin only): endpoints and their deliveries.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use sea_orm::ActiveEnum;

use super::backoffice::{PageInfo, parts};
use super::errors::GqlResultExt;
use super::types::datetime;
use super::{caller, webhooks};
use crate::backoffice::connections::PageArgs;
use crate::webhooks::{DeliveryView, EndpointView};

/// A URL that receives signed webhooks.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookEndpoint {
    pub id: ID,
    pub url: String,
    /// The event types it receives; `[]`: every type.
    pub events: Vec<String>,
    /// The signing secret: only in the answer that creates or rotates it.
    pub secret: Option<String>,
    pub enabled: bool,
}

impl From<EndpointView> for WebhookEndpoint {
    fn from(e: EndpointView) -> Self {
        Self {
            id: ID(e.id),
            url: e.url,
            events: e.events,
            secret: e.secret,
            enabled: e.enabled,
        }
    }
}

/// One webhook event for one endpoint.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookDelivery {
    pub id: ID,
    pub endpoint_id: ID,
    /// The `id` of the body sent.
    pub webhook_event_id: ID,
    pub event_type: String,
    pub attempts: i32,
    /// `PENDING`, `DELIVERED` or `FAILED`.
    pub status: String,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status_code: Option<i32>,
    /// When the next attempt is due; null once delivered or failed.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<DeliveryView> for WebhookDelivery {
    fn from(d: DeliveryView) -> Self {
        Self {
            id: ID(d.id),
            endpoint_id: ID(d.endpoint_id),
            webhook_event_id: ID(d.webhook_event_id),
            event_type: d.event_type,
            attempts: d.attempts,
            status: d.status.to_value(),
            last_status_code: d.last_status_code,
            next_attempt_at: d.next_attempt_at_ms.map(datetime),
            created_at: datetime(d.created_at_ms),
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookDeliveryEdge {
    pub cursor: String,
    pub node: WebhookDelivery,
}

/// A page of an endpoint's deliveries, newest first.
#[derive(SimpleObject, Clone, Debug)]
pub struct WebhookDeliveryConnection {
    pub edges: Vec<WebhookDeliveryEdge>,
    pub page_info: PageInfo,
    /// How many deliveries the endpoint has now.
    pub total_count: i32,
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// Every webhook endpoint, without secrets (admin only).
    async fn webhook_endpoints(&self, ctx: &Context<'_>) -> Result<Vec<WebhookEndpoint>> {
        let endpoints = webhooks(ctx).endpoints(caller(ctx)).await.gql()?;
        Ok(endpoints.into_iter().map(Into::into).collect())
    }

    /// An endpoint's deliveries, newest first (admin only). `first` defaults to 50, at most 500.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<WebhookDeliveryConnection> {
        let page = webhooks(ctx)
            .deliveries(
                caller(ctx),
                &endpoint_id,
                PageArgs {
                    first: first.map(i64::from),
                    after,
                },
            )
            .await
            .gql()?;
        let (edges, page_info, total_count) = parts(page, |cursor, v| WebhookDeliveryEdge {
            cursor,
            node: v.into(),
        });
        Ok(WebhookDeliveryConnection {
            edges,
            page_info,
            total_count,
        })
    }
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Registers an endpoint for `events` (`[]`: every type); the answer carries its secret,
    /// shown this once (admin only). Only `https` to public addresses, unless the server
    /// allows private ones.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        url: String,
        events: Vec<String>,
    ) -> Result<WebhookEndpoint> {
        Ok(webhooks(ctx)
            .create_endpoint(caller(ctx), &url, &events)
            .await
            .gql()?
            .into())
    }

    /// Changes an endpoint's URL, event types or enabled flag; what is not given stays
    /// (admin only). A disabled endpoint gets nothing until enabled again.
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
        url: Option<String>,
        events: Option<Vec<String>>,
        enabled: Option<bool>,
    ) -> Result<WebhookEndpoint> {
        Ok(webhooks(ctx)
            .update_endpoint(caller(ctx), &id, url.as_deref(), events.as_deref(), enabled)
            .await
            .gql()?
            .into())
    }

    /// Gives an endpoint a new secret, returned this once; every later attempt signs with it
    /// (admin only).
    async fn rotate_webhook_secret(&self, ctx: &Context<'_>, id: ID) -> Result<WebhookEndpoint> {
        Ok(webhooks(ctx)
            .rotate_secret(caller(ctx), &id)
            .await
            .gql()?
            .into())
    }

    /// Deletes an endpoint and its deliveries (admin only; `NOT_FOUND` if unknown).
    async fn delete_webhook_endpoint(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        webhooks(ctx).delete_endpoint(caller(ctx), &id).await.gql()
    }
}
