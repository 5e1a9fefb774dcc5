//! Schema extensions: contract codes on every error, and per-operation metrics. (The
//! mutation rate limits are in [`super::rate_limit`].)

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_graphql::Response;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextRequest, NextResolve, NextSubscribe,
    ResolveInfo,
};
use async_graphql::{ServerError, ServerResult, Value};
use futures::StreamExt;
use futures::stream::BoxStream;

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
