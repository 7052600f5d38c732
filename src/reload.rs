//! Hot reload (README "Reloading the configuration"): on SIGHUP, or when
//! `server.watch_config` is on and the configuration file or the TLS files
//! change, the configuration is read again. A valid one replaces the running
//! one for the next request ([`Live::replace`]); requests and connections in
//! flight finish with the one they began with, and sessions survive as long as
//! the session secret stays (or moves to `session.previous_secrets`). An
//! invalid one is refused with its reasons logged, and the running one goes on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::watch::Watch;
use crate::config::{self, Config};
use crate::{App, Live};

/// How often `server.watch_config` looks at the files.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);
/// How long a reload that opens a new session store (new Redis settings)
/// waits for it before it gives up and keeps the running configuration.
const STORE_WAIT: Duration = Duration::from_secs(10);

/// Where the configuration comes from, as at start-up: the file (and whether
/// the operator named it) overlaid with `PORTCULLIS_*` variables.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub named: bool,
}

/// Reloads on SIGHUP, and on file changes when the running configuration
/// says `server.watch_config = true`; runs until the process ends.
pub async fn follow(live: Arc<Live>, source: ConfigSource) {
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reload by SIGHUP is off");
            None
        }
    };
    let mut watch = watch_for(&live.app().config, &source);
    loop {
        let cause = tokio::select! {
            () = signalled(&mut hangup) => "SIGHUP",
            () = changed(&mut watch) => "file change",
        };
        // A reload may have turned the watch on or off, or moved the TLS files.
        if reload(&live, &source, cause).await.is_ok() {
            watch = watch_for(&live.app().config, &source);
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

async fn signalled(hangup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        if signal.recv().await.is_some() {
            return;
        }
        // The signal driver is gone (the runtime is stopping).
        *hangup = None;
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending().await
}

async fn changed(watch: &mut Option<Watch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

/// The configuration file and the TLS files, when `server.watch_config` is on.
fn watch_for(config: &Config, source: &ConfigSource) -> Option<Watch> {
    let s = &config.server;
    s.watch_config.then(|| {
        let files = [Some(&source.path), s.tls_cert.as_ref(), s.tls_key.as_ref()];
        Watch::new(files.into_iter().flatten().cloned(), WATCH_EVERY)
    })
}

/// Reads the configuration again and, when it is valid, applies it; either
/// way logged and counted. `cause` names what asked for it.
pub async fn reload(live: &Live, source: &ConfigSource, cause: &str) -> Result<(), String> {
    let running = live.app();
    let outcome = apply(live, &running, source).await;
    running.metrics.reload(outcome.is_ok());
    match &outcome {
        Ok(kept) => {
            tracing::info!(cause, "configuration reloaded");
            for key in kept {
                tracing::warn!(
                    key,
                    "{key} changed, but it takes effect only at a restart; the running value stays until then"
                );
            }
        }
        Err(reason) => tracing::error!(
            cause,
            reason = %reason,
            "configuration reload refused; the running configuration stays in use. Fix the file (`portcullis check` lists every problem) and reload again"
        ),
    }
    outcome.map(drop)
}

/// The new app in place; answers the restart-only keys that changed.
async fn apply(
    live: &Live,
    running: &App,
    source: &ConfigSource,
) -> Result<Vec<&'static str>, String> {
    let mut config = config::load(&source.path, source.named)
        .map_err(|e| format!("invalid configuration: {}", e.problems.join("; ")))?;
    let kept = keep_restart_only(&running.config, &mut config);
    let app = running.reloaded(config).map_err(|e| e.to_string())?;
    if !Arc::ptr_eq(&app.sessions, &running.sessions) && running.sessions.is_up() {
        let deadline = tokio::time::Instant::now() + STORE_WAIT;
        while !app.sessions.is_up() {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the session store of the new configuration did not come up within {}s; check session.redis_url and that Redis is reachable",
                    STORE_WAIT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    live.replace(app).map_err(|e| e.to_string())?;
    Ok(kept)
}

/// Settings fixed when the process started (listeners, connection limits,
/// the log's format and level): the running value is put into `new`, and the
/// names of those that differed are answered.
fn keep_restart_only(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    let (old, s) = (&running.server, &mut new.server);
    macro_rules! keep {
        ($old:expr, $new:expr, $name:literal) => {
            if $old != $new {
                $new = $old.clone();
                kept.push($name);
            }
        };
    }
    keep!(old.listen, s.listen, "server.listen");
    keep!(
        old.metrics_listen,
        s.metrics_listen,
        "server.metrics_listen"
    );
    keep!(
        old.max_connections,
        s.max_connections,
        "server.max_connections"
    );
    keep!(
        old.max_header_bytes,
        s.max_header_bytes,
        "server.max_header_bytes"
    );
    keep!(
        old.header_read_timeout,
        s.header_read_timeout,
        "server.header_read_timeout"
    );
    keep!(old.idle_timeout, s.idle_timeout, "server.idle_timeout");
    // TLS on or off changes the listener; new files for a TLS listener are
    // read by the reload.
    if old.tls_cert.is_some() != s.tls_cert.is_some()
        || old.tls_key.is_some() != s.tls_key.is_some()
    {
        s.tls_cert = old.tls_cert.clone();
        s.tls_key = old.tls_key.clone();
        kept.push("server.tls_cert");
    }
    keep!(running.log.format, new.log.format, "log.format");
    keep!(running.log.level, new.log.level, "log.level");
    keep!(running.log.access, new.log.access, "log.access");
    kept
}

#[cfg(test)]
mod tests;
