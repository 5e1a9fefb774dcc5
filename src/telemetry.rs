//! Logging, metrics and, when a collector is named, OpenTelemetry traces.
//!
//! Traces are off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! is set: then every `tracing` span (requests, service calls) is also an OpenTelemetry span,
//! exported over OTLP/HTTP (protobuf) in batches, and W3C `traceparent` headers join a caller's
//! trace. When they are off no layer is installed and no header is read, so they cost nothing.
//! The SDK reads the other standard variables itself (`OTEL_SERVICE_NAME`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`, …).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::LogFormat;

/// The variables that turn traces on: either names where spans go.
pub const OTLP_ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
const DEFAULT_SERVICE_NAME: &str = "onsale";

/// True once an exporter is installed; checked before any header is read or written.
static TRACES_ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (a collector is configured and the exporter was built).
pub fn traces_enabled() -> bool {
    TRACES_ON.load(Ordering::Relaxed)
}

/// What [`init`] installed that must be stopped at exit.
#[must_use = "call `shutdown` at exit, or spans still queued are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter. Waits (off the runtime's
    /// workers) at most the SDK's shutdown timeout, 5 s, for a collector that does not answer.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "traces: spans still queued at exit could not be exported")
            }
            Err(err) => tracing::warn!(error = %err, "traces: the exporter did not shut down"),
        }
    }
}

/// Installs the log subscriber (`RUST_LOG` overrides the default filter), and the trace
/// exporter when an OTLP endpoint is set. A second call installs nothing.
///
/// Fails only when an OTLP endpoint is set but cannot be used (say, not a URL).
pub fn init(format: LogFormat) -> Result<Telemetry, ExporterBuildError> {
    let provider = if otlp_endpoint_set() {
        Some(tracer_provider()?)
    } else {
        None
    };
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("onsale"))
            .with_threads(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                !is_exporter_target(meta.target())
            }))
    });
    let installed = tracing_subscriber::registry()
        .with(log_filter())
        .with(log_layer(format))
        .with(traces)
        .try_init()
        .is_ok();
    let provider = match provider {
        Some(provider) if installed => {
            // For any library that propagates through the global; ours use W3C directly.
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            TRACES_ON.store(true, Ordering::Relaxed);
            Some(provider)
        }
        // Another subscriber was there first: nothing would feed this exporter.
        Some(provider) => {
            let _ = provider.shutdown();
            None
        }
        None => None,
    };
    Ok(Telemetry { provider })
}

/// Installs the log subscriber only (no traces), for short commands. Safe to call twice.
pub fn init_logging(format: LogFormat) {
    let _ = tracing_subscriber::registry()
        .with(log_filter())
        .with(log_layer(format))
        .try_init();
}

fn log_filter() -> EnvFilter {
    EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn"))
}

fn log_layer<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
    }
}

/// Crates the exporter itself runs on. Their spans (`RUST_LOG=debug` and below) are logged but
/// not exported: each export would otherwise make spans for the next.
fn is_exporter_target(target: &str) -> bool {
    const EXPORTER: [&str; 5] = ["opentelemetry", "reqwest", "hyper", "h2", "rustls"];
    EXPORTER.iter().any(|krate| {
        target
            .strip_prefix(krate)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['_', '-', ':']))
    })
}

fn otlp_endpoint_set() -> bool {
    OTLP_ENDPOINT_VARS
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

/// OTLP/HTTP protobuf to the configured endpoint, through the SDK's batch processor (its own
/// thread; `OTEL_BSP_SCHEDULE_DELAY` and friends tune it).
fn tracer_provider() -> Result<SdkTracerProvider, ExporterBuildError> {
    // The exporter's reqwest client takes its TLS from the process-wide provider.
    crate::payment::install_crypto_provider();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build())
}

/// The SDK's resource (which reads `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`), named
/// `onsale` if they name no service.
fn resource() -> Resource {
    let named = Resource::builder()
        .build()
        .get(&Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named {
        builder.build()
    } else {
        builder.with_service_name(DEFAULT_SERVICE_NAME).build()
    }
}

/// Makes `span` a child of the caller's span named by a W3C `traceparent` header, so this
/// server's spans join the caller's trace. Does nothing when traces are off.
pub fn set_remote_parent(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !traces_enabled() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only for a span that is not recorded (filtered out): nothing to join then.
    let _ = span.set_parent(parent);
}

/// Adds `traceparent` naming the current span to an outgoing request, so the service called
/// can join the trace. Does nothing when traces are off.
pub fn with_trace_context(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    if !traces_enabled() {
        return request;
    }
    let mut headers = reqwest::header::HeaderMap::new();
    TraceContextPropagator::new().inject_context(
        &tracing::Span::current().context(),
        &mut HeaderInjector(&mut headers),
    );
    request.headers(headers)
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            // Fails only if another recorder is installed already; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::is_exporter_target;

    #[test]
    fn the_exporters_own_crates_are_not_exported() {
        for target in [
            "opentelemetry_sdk",
            "opentelemetry-otlp",
            "reqwest::connect",
            "hyper_util::client::legacy",
            "h2::proto",
            "hyper",
        ] {
            assert!(is_exporter_target(target), "{target}");
        }
        for target in ["onsale::booking::holds", "tower_http::trace", "h2o", "sqlx"] {
            assert!(!is_exporter_target(target), "{target}");
        }
    }
}
