//! The access log: one line per request (README "Logs"), formatted here
//! straight into a buffer rather than as a `tracing` event, whose trip through
//! tracing-subscriber's fmt layer (field visitors, `Debug` formatting, the
//! timestamp, the writer) cost ~17.7k instructions a request (BENCHMARKS.md).
//!
//! The lines are those the fmt layer wrote for
//! `tracing::info!(target: "portcullis::access", ..., "request")`: the same
//! layout, field names and order, quoting and number formats, text or JSON
//! (the tests below compare the two). Access lines are never coloured.
//!
//! **Where it goes.** [`AccessLog`] is a layer of the subscriber that
//! [`super::subscriber`] builds, so whoever installs that subscriber (the
//! process at start-up, a test on its thread) installs the access log with it.
//! A request finds it through `tracing`'s current dispatcher: a global, or a
//! thread-local under a scoped subscriber; no lock.
//!
//! **When it is on.** Decided once, when the subscriber is built: the filter
//! (`[log] level`, or `RUST_LOG` when set) must let target `portcullis::access`
//! through at `info`, judged by target and level only (directives that name
//! spans or fields do not turn it on). `[log] access = false` turns it off too.
//!
//! **Writing.** From `log::init` (the process) a line goes through a bounded
//! queue to a writer thread that writes to stderr in batches: while lines keep
//! coming it writes what gathered every 5 ms (up to 64 KiB a write), so a
//! request does not wake it; idle, it blocks until the next line. A request never waits on stderr: when the
//! queue is full (a log collector that stopped reading) the line is dropped
//! and counted, and the writer thread warns with the count, at most every 10
//! s. A failed write (a broken pipe) drops its batch; nothing panics. The
//! line buffers go back to the requests through a second queue, so a request
//! allocates nothing once the pool is warm. A test's writer (see
//! [`super::subscriber`]) is written synchronously, so it holds a request's line
//! once the response is back.

use std::cell::Cell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriter};

use crate::config::LogFormat;

/// One request's access-log fields.
pub struct Line<'a> {
    pub method: &'a http::Method,
    /// Without the query string.
    pub path: &'a str,
    pub status: u16,
    pub outcome: &'static str,
    /// The signed-in user's `sub`.
    pub user: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub duration: Duration,
    pub upstream: Option<Duration>,
    /// The response's `Content-Length`, when known.
    pub bytes: Option<u64>,
    pub client: IpAddr,
}

/// Whether the current subscriber has the access log on (see the module doc).
pub fn enabled() -> bool {
    tracing::dispatcher::get_default(|d| {
        d.downcast_ref::<AccessLog>()
            .is_some_and(|log| log.sink.is_some())
    })
}

/// Writes `line` to the current subscriber's access log, if it has one on.
pub fn write(line: &Line<'_>) {
    tracing::dispatcher::get_default(|d| {
        if let Some(log) = d.downcast_ref::<AccessLog>() {
            log.write(line);
        }
    });
}

/// Waits (at most about two seconds) until the writer thread has written every
/// queued line: for shutdown.
pub fn flush() {
    tracing::dispatcher::get_default(|d| {
        if let Some(Sink::Queue(queue)) =
            d.downcast_ref::<AccessLog>().and_then(|l| l.sink.as_ref())
        {
            let (done, wait) = std::sync::mpsc::sync_channel(1);
            let timeout = Duration::from_secs(1);
            if queue.lines.send_timeout(Msg::Flush(done), timeout).is_ok() {
                let _ = wait.recv_timeout(timeout);
            }
        }
    });
}

/// The access log as a (passive) layer of the subscriber; see the module doc.
pub struct AccessLog {
    format: LogFormat,
    /// `None`: off.
    sink: Option<Sink>,
}

impl<S: tracing::Subscriber> Layer<S> for AccessLog {}

pub(super) enum Sink {
    /// To the writer thread (the process).
    Queue(Queue),
    /// Synchronously (tests).
    Writer(BoxMakeWriter),
}

impl AccessLog {
    pub(super) fn new(format: LogFormat, sink: Option<Sink>) -> Self {
        Self { format, sink }
    }

    fn write(&self, line: &Line<'_>) {
        match &self.sink {
            None => {}
            Some(Sink::Queue(queue)) => {
                let mut buf = queue.spare.try_recv().unwrap_or_default();
                buf.clear();
                format(self.format, line, SystemTime::now(), &mut buf);
                queue.push(buf);
            }
            Some(Sink::Writer(make)) => {
                let mut buf = Vec::with_capacity(256);
                format(self.format, line, SystemTime::now(), &mut buf);
                let _ = make.make_writer().write_all(&buf);
            }
        }
    }
}

impl Sink {
    /// Synchronous writes to `writer` (the hook tests capture with).
    pub(super) fn writer<W>(writer: W) -> Self
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        Sink::Writer(BoxMakeWriter::new(writer))
    }

    /// A writer thread on stderr (or, if no thread can be started, stderr
    /// written synchronously).
    pub(super) fn stderr() -> Self {
        Self::thread(std::io::stderr())
    }

    /// A writer thread on `out`.
    fn thread(out: impl Write + Send + 'static) -> Self {
        let (lines, queued) = crossbeam_channel::bounded(QUEUE_LINES);
        let (recycle, spare) = crossbeam_channel::bounded(SPARE_BUFFERS);
        let queue = Queue {
            lines,
            spare,
            bytes: Arc::default(),
            dropped: Arc::default(),
        };
        let (bytes, dropped) = (queue.bytes.clone(), queue.dropped.clone());
        let started = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_queued(queued, recycle, bytes, dropped, out));
        match started {
            Ok(_) => Sink::Queue(queue),
            Err(_) => Sink::writer(std::io::stderr),
        }
    }
}

/// Lines waiting for the writer thread, at most.
const QUEUE_LINES: usize = 4096;
/// Bytes waiting for the writer thread, at most (long paths make long lines).
const QUEUE_BYTES: usize = 4 << 20;
/// Line buffers kept for reuse, and the largest one kept.
const SPARE_BUFFERS: usize = 1024;
const SPARE_CAPACITY: usize = 4096;
/// The most written to stderr at once.
const BATCH: usize = 64 << 10;
const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);
/// How long the writer thread gathers lines before the next write, while
/// they keep coming.
const GATHER: Duration = Duration::from_millis(5);

pub(super) struct Queue {
    lines: Sender<Msg>,
    spare: Receiver<Vec<u8>>,
    /// Bytes queued.
    bytes: Arc<AtomicUsize>,
    /// Lines dropped on a full queue, since start.
    dropped: Arc<AtomicU64>,
}

enum Msg {
    Line(Vec<u8>),
    Flush(std::sync::mpsc::SyncSender<()>),
}

impl Queue {
    fn push(&self, line: Vec<u8>) {
        let len = line.len();
        if self.bytes.fetch_add(len, Ordering::Relaxed) + len > QUEUE_BYTES {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.lines.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.bytes.fetch_sub(len, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer thread is gone (only if it panicked): nowhere to write.
            Err(TrySendError::Disconnected(_)) => {
                self.bytes.fetch_sub(len, Ordering::Relaxed);
            }
        }
    }
}

/// The writer thread: everything queued, in batches, to `out`.
fn write_queued(
    queued: Receiver<Msg>,
    recycle: Sender<Vec<u8>>,
    bytes: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    mut out: impl Write,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut reported = 0;
    let mut last_warning: Option<Instant> = None;
    while let Ok(first) = queued.recv() {
        let mut next = Some(first);
        while next.is_some() {
            while let Some(msg) = next {
                match msg {
                    Msg::Line(line) => {
                        bytes.fetch_sub(line.len(), Ordering::Relaxed);
                        if batch.len() + line.len() > BATCH {
                            write_batch(&mut out, &mut batch);
                        }
                        batch.extend_from_slice(&line);
                        if line.capacity() <= SPARE_CAPACITY {
                            let _ = recycle.try_send(line);
                        }
                    }
                    Msg::Flush(done) => {
                        write_batch(&mut out, &mut batch);
                        let _ = done.send(());
                    }
                }
                next = queued.try_recv().ok();
            }
            write_batch(&mut out, &mut batch);
            let total = dropped.load(Ordering::Relaxed);
            if total > reported && last_warning.is_none_or(|at| at.elapsed() >= DROP_WARNING_EVERY)
            {
                tracing::warn!(
                    dropped = total - reported,
                    "access log: lines dropped, stderr is not keeping up"
                );
                reported = total;
                last_warning = Some(Instant::now());
            }
            // While lines keep coming, gather them for a moment rather than
            // being woken (by the request that sent it) for each; once none
            // came, block until the next one.
            std::thread::sleep(GATHER);
            next = queued.try_recv().ok();
        }
    }
}

/// One write; an error (a broken pipe, a closed collector) drops the batch.
fn write_batch(out: &mut impl Write, batch: &mut Vec<u8>) {
    if !batch.is_empty() {
        let _ = out.write_all(batch);
        let _ = out.flush();
        batch.clear();
    }
}

/// Appends `line`, as `format`, at `now`, and a newline to `buf`.
fn format(format: LogFormat, line: &Line<'_>, now: SystemTime, buf: &mut Vec<u8>) {
    match format {
        LogFormat::Text => text(line, now, buf),
        LogFormat::Json => json(line, now, buf),
    }
}

/// `<timestamp>  INFO portcullis::access: request method=GET path="/x" ...`,
/// strings quoted and escaped as `Debug` does.
fn text(line: &Line<'_>, now: SystemTime, buf: &mut Vec<u8>) {
    timestamp(now, buf);
    buf.extend_from_slice(b"  INFO portcullis::access: request method=");
    let method = line.method.as_str();
    // A method is a token (http checks), so bare as `Display` left it.
    if method
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        buf.extend_from_slice(method.as_bytes());
    } else {
        debug_str(method, buf);
    }
    buf.extend_from_slice(b" path=");
    debug_str(line.path, buf);
    buf.extend_from_slice(b" status=");
    buf.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    buf.extend_from_slice(b" outcome=");
    debug_str(line.outcome, buf);
    if let Some(user) = line.user {
        buf.extend_from_slice(b" user=");
        debug_str(user, buf);
    }
    if let Some(provider) = line.provider {
        buf.extend_from_slice(b" provider=");
        debug_str(provider, buf);
    }
    buf.extend_from_slice(b" duration_ms=");
    float(super::millis(line.duration), buf);
    if let Some(upstream) = line.upstream {
        buf.extend_from_slice(b" upstream_ms=");
        float(super::millis(upstream), buf);
    }
    if let Some(bytes) = line.bytes {
        buf.extend_from_slice(b" bytes=");
        buf.extend_from_slice(itoa::Buffer::new().format(bytes).as_bytes());
    }
    buf.extend_from_slice(b" client=");
    ip(line.client, buf);
    buf.push(b'\n');
}

/// `{"timestamp":...,"level":"INFO","message":"request","method":...,"target":"portcullis::access"}`,
/// strings escaped by serde_json.
fn json(line: &Line<'_>, now: SystemTime, buf: &mut Vec<u8>) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(now, buf);
    buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":");
    json_str(line.method.as_str(), buf);
    buf.extend_from_slice(b",\"path\":");
    json_str(line.path, buf);
    buf.extend_from_slice(b",\"status\":");
    buf.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    buf.extend_from_slice(b",\"outcome\":");
    json_str(line.outcome, buf);
    if let Some(user) = line.user {
        buf.extend_from_slice(b",\"user\":");
        json_str(user, buf);
    }
    if let Some(provider) = line.provider {
        buf.extend_from_slice(b",\"provider\":");
        json_str(provider, buf);
    }
    buf.extend_from_slice(b",\"duration_ms\":");
    float(super::millis(line.duration), buf);
    if let Some(upstream) = line.upstream {
        buf.extend_from_slice(b",\"upstream_ms\":");
        float(super::millis(upstream), buf);
    }
    if let Some(bytes) = line.bytes {
        buf.extend_from_slice(b",\"bytes\":");
        buf.extend_from_slice(itoa::Buffer::new().format(bytes).as_bytes());
    }
    buf.extend_from_slice(b",\"client\":\"");
    ip(line.client, buf);
    buf.extend_from_slice(b"\",\"target\":\"portcullis::access\"}\n");
}

/// `client` as `Display` writes it; IPv4 without the formatter, which cost
/// ~900 instructions a line.
fn ip(client: IpAddr, buf: &mut Vec<u8>) {
    match client {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                buf.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
}

/// `s` as `{:?}` writes it: quoted, with `"`, `\`, control and unprintable
/// characters escaped, so no value can end the line or the field. Printable
/// ASCII without `"` or `\`, which `Debug` leaves as it is, skips the
/// formatter.
fn debug_str(s: &str, buf: &mut Vec<u8>) {
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        let _ = write!(buf, "{s:?}");
    }
}

/// `s` as a JSON string, escaped by serde_json.
fn json_str(s: &str, buf: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// The shortest representation that reads back as `value` (ryu, as
/// serde_json writes floats); durations are always finite.
fn float(value: f64, buf: &mut Vec<u8>) {
    if value.is_finite() {
        buf.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    } else {
        buf.push(b'0');
    }
}

thread_local! {
    /// The last second formatted on this thread, `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `now` as RFC 3339 in UTC with microseconds, as tracing-subscriber writes
/// it (`2026-12-04T20:04:43.123456Z`); the date and time of day made once a
/// second per thread (by humantime).
fn timestamp(now: SystemTime, buf: &mut Vec<u8>) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut second) = SECOND.get();
    if cached != secs {
        let formatted =
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string();
        let Some(prefix) = formatted.as_bytes().get(..19) else {
            return;
        };
        second.copy_from_slice(prefix);
        SECOND.set((secs, second));
    }
    buf.extend_from_slice(&second);
    let mut micros = since.subsec_micros();
    let mut digits = *b".000000Z";
    for digit in digits[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    buf.extend_from_slice(&digits);
}

/// Whether `subscriber` lets an `info` event of target `portcullis::access`
/// through: asked once, when the subscriber is built.
pub(super) fn let_through(subscriber: &impl tracing::Subscriber) -> bool {
    subscriber.enabled(&PROBE)
}

struct Probe;

impl tracing_core::Callsite for Probe {
    fn set_interest(&self, _: tracing_core::Interest) {}

    fn metadata(&self) -> &tracing_core::Metadata<'_> {
        &PROBE
    }
}

static PROBE_CALLSITE: Probe = Probe;
static PROBE: tracing_core::Metadata<'static> = tracing_core::metadata! {
    name: "request",
    target: super::ACCESS,
    level: tracing_core::Level::INFO,
    fields: &[],
    callsite: &PROBE_CALLSITE,
    kind: tracing_core::metadata::Kind::EVENT,
};

#[cfg(test)]
mod tests;
