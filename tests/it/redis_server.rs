//! A real `redis-server` for tests: on a free loopback port, no persistence,
//! killed by its pid when dropped. The library's unit tests include this same
//! file (`#[path]` in `src/session/redis/tests.rs`), so it uses std alone.
//!
//! When `redis-server` cannot be found, [`RedisServer::start`] returns `None`
//! and the test skips with a note, unless `REQUIRE_REDIS` is set (`.ci/run`
//! sets it): then it fails, naming what is missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to answer PING.
const START_DEADLINE: Duration = Duration::from_secs(10);

pub struct RedisServer {
    pub addr: SocketAddr,
    role: Role,
    binary: PathBuf,
    /// Its own working directory, where [`Self::snapshot`] writes; removed on drop.
    dir: PathBuf,
    child: Option<Child>,
}

/// What a server is started as.
#[derive(Clone, Copy)]
enum Role {
    Master,
    /// A master that wants this password (`requirepass`).
    Guarded(&'static str),
    /// A replica of the master at this address.
    Replica(SocketAddr),
    /// A Sentinel watching the master at this address, as [`MASTER_NAME`].
    Sentinel(SocketAddr),
}

/// The name Sentinels started here know their master by.
pub const MASTER_NAME: &str = "portcullis-test";

impl RedisServer {
    /// A running server, or `None` (with a printed note) when there is no
    /// `redis-server` and `REQUIRE_REDIS` is unset.
    pub fn start() -> Option<Self> {
        Self::start_as(Role::Master)
    }

    /// A replica of this server.
    pub fn start_replica(&self) -> Self {
        Self::start_as(Role::Replica(self.addr)).expect("redis-server is installed")
    }

    /// A Sentinel watching this server as [`MASTER_NAME`], quick to judge it
    /// down (half a second) and to fail over.
    pub fn start_sentinel(&self) -> Self {
        Self::start_as(Role::Sentinel(self.addr)).expect("redis-server is installed")
    }

    /// A server that wants `password`; [`Self::url`] carries it.
    pub fn start_with_password(password: &'static str) -> Option<Self> {
        Self::start_as(Role::Guarded(password))
    }

    fn start_as(role: Role) -> Option<Self> {
        let Some(binary) = find_binary() else {
            let required = std::env::var_os("REQUIRE_REDIS").is_some();
            assert!(
                !required,
                "REQUIRE_REDIS is set but redis-server is not installed (apt-get install redis-server, or set REDIS_SERVER to its path)"
            );
            eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
            return None;
        };
        // A port the system just handed out and took back: free, barring a race,
        // which the retry covers.
        for _ in 0..5 {
            let addr = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port");
            let dir = std::env::temp_dir().join(format!(
                "portcullis-redis-{}-{}",
                std::process::id(),
                addr.port()
            ));
            std::fs::create_dir_all(&dir).expect("a directory for redis-server");
            let mut server = Self {
                addr,
                role,
                binary: binary.clone(),
                dir,
                child: None,
            };
            if server.spawn() {
                return Some(server);
            }
        }
        panic!("redis-server did not start on a free port in 5 tries");
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        match self.role {
            Role::Guarded(password) => format!("redis://:{password}@{}/", self.addr),
            _ => format!("redis://{}/", self.addr),
        }
    }

    /// Kills the server (SIGKILL: no goodbye to clients), and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing
    /// answers, as with a hung Redis. [`Self::resume`] thaws it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        let sent = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} {pid} failed");
    }

    /// Writes what the server holds to disk (SAVE), for a [`Self::restart`]
    /// to load: a Redis with persistence, which comes back with its data.
    pub fn snapshot(&self) {
        let mut conn = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1))
            .expect("connect to redis-server");
        conn.set_read_timeout(Some(START_DEADLINE)).unwrap();
        let mut reply = [0u8; 5];
        conn.write_all(b"SAVE\r\n").unwrap();
        conn.read_exact(&mut reply).expect("SAVE answered");
        assert_eq!(&reply, b"+OK\r\n", "SAVE failed");
    }

    /// Kills the server if it runs, and starts a new one on the same port:
    /// empty, unless [`Self::snapshot`] wrote its data first.
    pub fn restart(&mut self) {
        self.stop();
        // The port was just released; another process taking it in between
        // would be a rare race, reported plainly.
        assert!(
            self.spawn(),
            "redis-server did not start again on {}",
            self.addr
        );
    }

    /// Starts the server on `self.addr`; false when it exits (port taken) or
    /// never answers PING.
    fn spawn(&mut self) -> bool {
        let mut command = Command::new(&self.binary);
        match self.role {
            Role::Master => {}
            Role::Guarded(password) => {
                command.args(["--requirepass", password]);
            }
            Role::Replica(master) => {
                command.args(["--replicaof", "127.0.0.1", &master.port().to_string()]);
            }
            // A Sentinel needs a config file it may rewrite.
            Role::Sentinel(master) => {
                let config = self.dir.join("sentinel.conf");
                let text = format!(
                    "sentinel monitor {MASTER_NAME} 127.0.0.1 {port} 1\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 500\n\
                     sentinel failover-timeout {MASTER_NAME} 2000\n",
                    port = master.port()
                );
                std::fs::write(&config, text).expect("write sentinel.conf");
                command.arg(&config).arg("--sentinel");
            }
        }
        let child = command
            .args(["--port", &self.addr.port().to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            // Its own directory: a snapshot is read back by a restart of this
            // server, and no other's.
            .args(["--dir", &self.dir.to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if self.answers_ping() {
                return true;
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
        // `-NOAUTH ...` from a server that wants a password: it runs.
        let mut reply = [0u8; 7];
        conn.write_all(b"PING\r\n").is_ok()
            && conn.read_exact(&mut reply).is_ok()
            && (&reply == b"+PONG\r\n" || reply.starts_with(b"-NOAUTH"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `REDIS_SERVER`, else `redis-server` on the PATH, else Debian's path.
fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/bin/redis-server");
        debian.is_file().then_some(debian)
    })
}
