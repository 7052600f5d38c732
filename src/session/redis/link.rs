//! The connections to Redis: one multiplexed connection for commands, watched
//! and re-made by a background task, and one pub/sub connection that feeds
//! invalidations. Neither blocks start-up, and neither lets a request wait on
//! a Redis that is down or hung for longer than [`COMMAND_TIMEOUT`].
//!
//! Why not the crate's `ConnectionManager`: it reconnects to the address it
//! was built with, so after a Sentinel failover it would keep knocking on the
//! old master; and it keeps no state to answer "is Redis up?" or to log an
//! outage once. The loop below re-asks the Sentinels on every reconnect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSub};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{AsyncConnectionConfig, Client, RedisResult, TlsMode};
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::{Instant, sleep, timeout, timeout_at};

use super::{Invalidation, SessionDigest, Unavailable};
use crate::config::RedisConfig;

/// The longest a request waits on Redis: for a connection, then for the
/// answer. A hung Redis costs a request this, then a 503.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an idle link is checked (PING), so that `is_up` and the log
/// follow an outage even when no request comes.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// Pause between two failed connection attempts: Redis back from an outage is
/// used again within this.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Where the master is: one URL, or whatever the Sentinels say now.
enum Target {
    Direct(Client),
    Sentinel {
        sentinels: tokio::sync::Mutex<Sentinel>,
        master_name: String,
        node: SentinelNodeConnectionInfo,
    },
}

impl Target {
    async fn client(&self) -> RedisResult<Client> {
        match self {
            Self::Direct(client) => Ok(client.clone()),
            Self::Sentinel {
                sentinels,
                master_name,
                node,
            } => {
                sentinels
                    .lock()
                    .await
                    .async_master_for(master_name, Some(node))
                    .await
            }
        }
    }
}

/// The command connection's state, as requests see it.
#[derive(Clone)]
enum State {
    /// The first attempt (at start, or just after a working link broke) is
    /// under way: a request waits for it, within its timeout.
    Connecting,
    Up(MultiplexedConnection),
    /// Known down: requests fail at once while attempts go on.
    Down,
}

pub(super) struct Link {
    target: Target,
    /// For log lines: where Redis is, without credentials.
    place: String,
    /// Sentinel mode: a master must still be one (a failover demotes it).
    check_role: bool,
    state: watch::Sender<State>,
    /// A command failed: check the link now rather than at the next interval.
    suspect: Notify,
    /// The pub/sub connection is subscribed.
    listening: AtomicBool,
}

impl Link {
    /// Errors only on Sentinel addresses the client refuses (validation has
    /// checked their shape).
    pub(super) fn new(config: &RedisConfig) -> RedisResult<Self> {
        let tls = config.url.as_ref().is_some_and(|u| u.is_tls());
        let (target, place) = if config.sentinels.is_empty() {
            let url = config
                .url
                .as_ref()
                .expect("validation: without sentinels there is a url");
            (Target::Direct(Client::open(url.expose())?), url.host())
        } else {
            let scheme = if tls { "rediss" } else { "redis" };
            let sentinels = config
                .sentinels
                .iter()
                .map(|s| format!("{scheme}://{s}"))
                .collect::<Vec<_>>();
            let master_name = config
                .master_name
                .clone()
                .expect("validation: sentinels come with a master name");
            let mut node = SentinelNodeConnectionInfo::default();
            if tls {
                node = node.set_tls_mode(TlsMode::Secure);
            }
            if let Some(url) = &config.url {
                let master = Client::open(url.expose())?;
                node = node.set_redis_connection_info(
                    master.get_connection_info().redis_settings().clone(),
                );
            }
            let place = format!(
                "master {master_name:?} of Sentinels {}",
                config.sentinels.join(", ")
            );
            let target = Target::Sentinel {
                sentinels: tokio::sync::Mutex::new(Sentinel::build(sentinels)?),
                master_name,
                node,
            };
            (target, place)
        };
        Ok(Self {
            target,
            place,
            check_role: !config.sentinels.is_empty(),
            state: watch::Sender::new(State::Connecting),
            suspect: Notify::new(),
            listening: AtomicBool::new(false),
        })
    }

    /// Commands can be sent and invalidations are heard.
    pub(super) fn is_up(&self) -> bool {
        matches!(*self.state.borrow(), State::Up(_)) && self.listening.load(Ordering::Relaxed)
    }

    /// Runs `command` on the link within [`COMMAND_TIMEOUT`] (waiting for a
    /// connection included). Any failure is `Unavailable`, logged at debug
    /// (the link's task logs outages), and has the link checked at once.
    pub(super) async fn run<T, F, Fut>(&self, command: F) -> Result<T, Unavailable>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let mut state = self.state.subscribe();
        let ready = state.wait_for(|s| !matches!(s, State::Connecting));
        let connection = match timeout_at(deadline, ready).await {
            Ok(Ok(state)) => match &*state {
                State::Up(connection) => connection.clone(),
                _ => return Err(Unavailable),
            },
            _ => return Err(Unavailable),
        };
        match timeout_at(deadline, command(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                tracing::debug!(error = %error, "Redis command failed");
                self.suspect.notify_one();
                Err(Unavailable)
            }
            Err(_) => {
                tracing::debug!("Redis command timed out");
                self.suspect.notify_one();
                Err(Unavailable)
            }
        }
    }

    /// Keeps the command connection up, forever: connect, check it every
    /// [`HEALTH_INTERVAL`] (or at once when a command failed), reconnect when
    /// a check fails. Logs once when an outage starts and once when it ends.
    pub(super) async fn keep_up(self: Arc<Self>) {
        let mut outage = false;
        loop {
            match timeout(COMMAND_TIMEOUT, self.connect()).await {
                Ok(Ok(connection)) => {
                    if outage {
                        tracing::info!(redis = %self.place, "session store: Redis is reachable again");
                        outage = false;
                    }
                    self.state.send_replace(State::Up(connection.clone()));
                    let error = self.watch(connection).await;
                    self.state.send_replace(State::Down);
                    self.log_outage(&mut outage, &error);
                }
                Ok(Err(error)) => {
                    self.state.send_replace(State::Down);
                    self.log_outage(&mut outage, &error.to_string());
                    sleep(RETRY_INTERVAL).await;
                }
                Err(_) => {
                    self.state.send_replace(State::Down);
                    self.log_outage(&mut outage, "no answer within the timeout");
                    sleep(RETRY_INTERVAL).await;
                }
            }
        }
    }

    async fn connect(&self) -> RedisResult<MultiplexedConnection> {
        let client = self.target.client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.check(&mut connection).await?;
        Ok(connection)
    }

    /// Returns why the connection stopped answering.
    async fn watch(&self, mut connection: MultiplexedConnection) -> String {
        loop {
            tokio::select! {
                () = sleep(HEALTH_INTERVAL) => {}
                () = self.suspect.notified() => {}
            }
            match timeout(COMMAND_TIMEOUT, self.check(&mut connection)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return error.to_string(),
                Err(_) => return "no answer within the timeout".to_owned(),
            }
        }
    }

    /// PING; with Sentinels, ROLE too: a demoted master answers PING but
    /// refuses writes.
    async fn check(&self, connection: &mut MultiplexedConnection) -> RedisResult<()> {
        if !self.check_role {
            return redis::cmd("PING").query_async(connection).await;
        }
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(connection).await?;
        match role.first() {
            Some(redis::Value::BulkString(role)) if role == b"master" => Ok(()),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the server the Sentinels named is no longer the master",
            ))),
        }
    }

    /// Once per outage; `cause` comes from the Redis client and names no password.
    fn log_outage(&self, outage: &mut bool, cause: &str) {
        if !*outage {
            tracing::warn!(
                redis = %self.place,
                cause,
                "session store: Redis is unreachable, so sessions not already cached cannot be loaded, saved or ended (503) until it is back; check that Redis runs and that session.redis_url (or redis_sentinels) names it"
            );
            *outage = true;
        }
    }

    /// Subscribes to `channel` and turns its messages into invalidations,
    /// forever. Every (re)subscription sends [`Invalidation::All`]: messages
    /// published while no subscription was listening are lost.
    pub(super) async fn listen(
        self: Arc<Self>,
        channel: String,
        invalidations: broadcast::Sender<Invalidation>,
    ) {
        let mut outage = false;
        loop {
            match timeout(COMMAND_TIMEOUT, self.subscribe(&channel)).await {
                Ok(Ok(pubsub)) => {
                    if outage {
                        tracing::info!(redis = %self.place, "session store: listening to invalidations again");
                        outage = false;
                    }
                    self.listening.store(true, Ordering::Relaxed);
                    let _ = invalidations.send(Invalidation::All);
                    let cause = relay(pubsub, &invalidations).await;
                    self.listening.store(false, Ordering::Relaxed);
                    self.log_deaf(&mut outage, &cause);
                }
                Ok(Err(error)) => {
                    self.log_deaf(&mut outage, &error.to_string());
                    sleep(RETRY_INTERVAL).await;
                }
                Err(_) => {
                    self.log_deaf(&mut outage, "no answer within the timeout");
                    sleep(RETRY_INTERVAL).await;
                }
            }
        }
    }

    async fn subscribe(&self, channel: &str) -> RedisResult<PubSub> {
        let mut pubsub = self.target.client().await?.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    }

    fn log_deaf(&self, outage: &mut bool, cause: &str) {
        if !*outage {
            tracing::warn!(
                redis = %self.place,
                cause,
                "session store: not subscribed to session invalidations, so sign-outs on other replicas are seen only when cached sessions expire from the cache; check that Redis runs and that its user may SUBSCRIBE"
            );
            *outage = true;
        }
    }
}

/// Forwards messages until the subscription ends; returns why. A PING every
/// [`HEALTH_INTERVAL`] without traffic notices a Redis that hung or vanished
/// without closing the connection.
async fn relay(pubsub: PubSub, invalidations: &broadcast::Sender<Invalidation>) -> String {
    let (mut sink, mut messages) = pubsub.split();
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(message) => {
                    match SessionDigest::from_hex(message.get_payload_bytes()) {
                        Some(digest) => {
                            let _ = invalidations.send(Invalidation::Session(digest));
                        }
                        None => tracing::debug!("ignored an invalidation that is not a session digest"),
                    }
                }
                None => return "the connection closed".to_owned(),
            },
            () = sleep(HEALTH_INTERVAL) => {
                match timeout(COMMAND_TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return error.to_string(),
                    Err(_) => return "no answer within the timeout".to_owned(),
                }
            }
        }
    }
}
