//! The log (README "Logs"): text or JSON lines on stderr, filtered by
//! `log.level` unless `RUST_LOG` is set. Two targets are for operators to
//! route: [`ACCESS`] (one event per request) and [`AUDIT`] (sign-in,
//! sign-out, refusals and their reasons).

use std::time::Duration;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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
    let _ = tracing::subscriber::set_global_default(subscriber(
        config.format,
        filter,
        ansi,
        std::io::stderr,
    ));
}

/// The subscriber `init` installs, writing to `writer` (tests give a buffer).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
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
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        // One JSON object per line, the event's fields at its top level.
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}

/// Milliseconds, with microseconds, for the access log.
pub fn millis(took: Duration) -> f64 {
    took.as_secs_f64() * 1000.0
}
