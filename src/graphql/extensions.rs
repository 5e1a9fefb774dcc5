//! Schema extensions: per-operation metrics, and rate limits on mutations per user and per
//! client IP (answering `RETRY_LATER` with `retryAfterMs`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use async_graphql::Response;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextResolve,
    NextSubscribe, ResolveInfo,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{ServerError, ServerResult, Value, Variables};
use futures::StreamExt;
use futures::stream::BoxStream;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::Caller;

/// The client address of an HTTP request, attached as request data.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

/// The contract code of an error; errors without one are the engine's own (parse, validation,
/// limits) and count as `BAD_USER_INPUT`.
pub fn error_code(err: &ServerError) -> &str {
    match err.extensions.as_ref().and_then(|e| e.get("code")) {
        Some(Value::String(code)) => code,
        _ => "BAD_USER_INPUT",
    }
}

/// Errors the engine raises itself (parse, validation, depth and complexity limits) carry no
/// code; they are the client's to fix, so they get `BAD_USER_INPUT` — over HTTP and WebSocket.
fn with_codes(mut resp: Response) -> Response {
    for err in &mut resp.errors {
        let has_code = err
            .extensions
            .as_ref()
            .is_some_and(|ext| ext.get("code").is_some());
        if !has_code {
            err.extensions
                .get_or_insert_with(Default::default)
                .set("code", "BAD_USER_INPUT");
        }
    }
    resp
}

/// Applies [`with_codes`] to every response, queries and subscriptions alike.
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension)
    }
}

struct ErrorCodesExtension;

#[async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        with_codes(next.run(ctx).await)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream).map(with_codes).boxed()
    }
}

/// Records count and latency of every root field by outcome code.
pub struct Metrics;

impl ExtensionFactory for Metrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(MetricsExtension)
    }
}

struct MetricsExtension;

#[async_trait::async_trait]
impl Extension for MetricsExtension {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.parent.is_some() {
            return next.run(ctx, info).await;
        }
        // Field names come from the schema, so the label set is bounded.
        let field = info.name.to_owned();
        let started = Instant::now();
        let result = next.run(ctx, info).await;
        let code = match &result {
            Ok(_) => "OK".to_owned(),
            Err(err) => error_code(err).to_owned(),
        };
        metrics::counter!("onsale_graphql_operations_total", "field" => field.clone(), "code" => code.clone())
            .increment(1);
        metrics::histogram!("onsale_graphql_operation_seconds", "field" => field, "code" => code)
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// Rate limits on mutations. A limit of 0 turns that limit off.
pub struct MutationRateLimit {
    per_user: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    per_ip: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
}

fn quota(per_sec: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(per_sec.saturating_mul(3)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl MutationRateLimit {
    pub fn new(user_per_sec: u32, ip_per_sec: u32) -> Self {
        let per_user = quota(user_per_sec).map(|q| Arc::new(RateLimiter::keyed(q)));
        let per_ip = quota(ip_per_sec).map(|q| Arc::new(RateLimiter::keyed(q)));
        // Forget idle keys now and then, so memory stays bounded.
        if per_user.is_some() || per_ip.is_some() {
            let (users, ips) = (per_user.clone(), per_ip.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    if let Some(l) = &users {
                        l.retain_recent();
                        l.shrink_to_fit();
                    }
                    if let Some(l) = &ips {
                        l.retain_recent();
                        l.shrink_to_fit();
                    }
                }
            });
        }
        Self { per_user, per_ip }
    }
}

impl ExtensionFactory for MutationRateLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RateLimitExtension {
            per_user: self.per_user.clone(),
            per_ip: self.per_ip.clone(),
        })
    }
}

struct RateLimitExtension {
    per_user: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    per_ip: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
}

fn is_mutation(doc: &ExecutableDocument) -> bool {
    doc.operations
        .iter()
        .any(|(_, op)| op.node.ty == OperationType::Mutation)
}

fn too_many(wait_ms: u64, who: &str) -> ServerError {
    metrics::counter!("onsale_rate_limited_total", "by" => who.to_owned()).increment(1);
    let retry_after_ms = wait_ms.max(1);
    let mut err = ServerError::new(
        format!("too many requests from this {who}; try again in {retry_after_ms} ms"),
        None,
    );
    let mut ext = async_graphql::ErrorExtensionValues::default();
    ext.set("code", "RETRY_LATER");
    ext.set("retryAfterMs", retry_after_ms);
    err.extensions = Some(ext);
    err
}

#[async_trait::async_trait]
impl Extension for RateLimitExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        if !is_mutation(&doc) {
            return Ok(doc);
        }
        let now = DefaultClock::default().now();
        if let (Some(limiter), Some(Caller::User(user))) =
            (&self.per_user, ctx.data_opt::<Caller>())
            && let Err(not_until) = limiter.check_key(&user.id)
        {
            let wait = not_until.wait_time_from(now).as_millis();
            return Err(too_many(u64::try_from(wait).unwrap_or(u64::MAX), "user"));
        }
        if let (Some(limiter), Some(ClientIp(ip))) = (&self.per_ip, ctx.data_opt::<ClientIp>())
            && let Err(not_until) = limiter.check_key(ip)
        {
            let wait = not_until.wait_time_from(now).as_millis();
            return Err(too_many(u64::try_from(wait).unwrap_or(u64::MAX), "address"));
        }
        Ok(doc)
    }
}
