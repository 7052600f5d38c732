//! The log (README "Logs"): text or JSON lines on stderr, filtered by
//! `log.level` unless `RUST_LOG` is set. Two targets are for operators to
//! route: [`ACCESS`] (one event per request) and [`AUDIT`] (sign-in,
//! sign-out, refusals and their reasons). The access log is written by
//! [`access`], not through tracing's fmt layer; see there.

pub mod access;

use std::time::Duration;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use crate::config::{LogConfig, LogFormat};

pub const ACCESS: &str = "portcullis::access";
pub const AUDIT: &str = "portcullis::audit";

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
            access: true,
        }
    }
}

/// Installs the process's subscriber (once; later calls do nothing), and the
/// rustls crypto provider, before anything builds a TLS config.
pub fn init(config: &LogConfig) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    // Colour only for a person at a terminal, never into log files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing::subscriber::set_global_default(build(
        config.format,
        filter,
        ansi,
        std::io::stderr,
        access::Sink::stderr,
    ));
}

/// The subscriber `init` installs, writing to `writer` (tests give a buffer),
/// the access log included, written synchronously.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    let access = writer.clone();
    build(format, filter, ansi, writer, move || {
        access::Sink::writer(access)
    })
}

/// The subscriber, with the access log as a layer of it; `access` makes the
/// access log's sink if the filter lets the access log through.
fn build<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
    access: impl FnOnce() -> access::Sink,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // On a failed write tracing-subscriber would `eprintln!` the error,
        // which panics when stderr is the broken pipe it failed on: a log
        // collector going away must not fail the request that logged.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => with_access(builder.with_ansi(ansi).finish(), format, access),
        // One JSON object per line, the event's fields at its top level.
        LogFormat::Json => with_access(builder.json().flatten_event(true).finish(), format, access),
    }
}

fn with_access<S>(
    subscriber: S,
    format: LogFormat,
    access: impl FnOnce() -> access::Sink,
) -> Box<dyn Subscriber + Send + Sync>
where
    S: Subscriber + Send + Sync + 'static,
{
    let sink = access::let_through(&subscriber).then(access);
    Box::new(subscriber.with(access::AccessLog::new(format, sink)))
}

/// Milliseconds, with microseconds, for the access log.
pub fn millis(took: Duration) -> f64 {
    took.as_secs_f64() * 1000.0
}
