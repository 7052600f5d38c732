use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::Value;

use super::*;

/// What the fmt layer wrote for the access event before this module: the
/// event as `lib.rs` emitted it, through `log::subscriber`'s fmt layer.
fn through_tracing(format: LogFormat, line: &Line<'_>) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let builder = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false);
    let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    };
    tracing::subscriber::with_default(subscriber, || {
        let method = line.method;
        let client = line.client;
        tracing::info!(
            target: super::super::ACCESS,
            %method,
            path = line.path,
            status = line.status,
            outcome = line.outcome,
            user = line.user,
            provider = line.provider,
            duration_ms = super::super::millis(line.duration),
            upstream_ms = line.upstream.map(super::super::millis),
            bytes = line.bytes,
            %client,
            "request"
        );
    });
    String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
}

fn ours(format: LogFormat, line: &Line<'_>) -> String {
    let mut buf = Vec::new();
    super::format(format, line, SystemTime::now(), &mut buf);
    String::from_utf8(buf).unwrap()
}

/// The line without its timestamp (text: the first word; JSON: the value).
fn untimed(format: LogFormat, line: &str) -> String {
    match format {
        LogFormat::Text => line.split_once(' ').unwrap().1.to_owned(),
        LogFormat::Json => {
            let start = line.find("\"timestamp\":\"").unwrap() + 13;
            let end = start + line[start..].find('"').unwrap();
            format!("{}{}", &line[..start], &line[end..])
        }
    }
}

fn line<'a>(method: &'a http::Method, path: &'a str, user: Option<&'a str>) -> Line<'a> {
    Line {
        method,
        path,
        status: 200,
        outcome: "proxied",
        user,
        provider: user.map(|_| "demo"),
        duration: Duration::from_micros(1234),
        upstream: user.map(|_| Duration::from_nanos(987_654)),
        bytes: user.map(|_| 5),
        client: IpAddr::from([127, 0, 0, 1]),
    }
}

#[test]
fn lines_are_those_the_fmt_layer_wrote_text_and_json() {
    let get = http::Method::GET;
    let custom = http::Method::from_bytes(b"PURGE").unwrap();
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    let mapped: IpAddr = "::ffff:10.0.0.255".parse().unwrap();
    let mut lines = vec![
        line(&get, "/report", Some("ada")),
        line(&custom, "/", None),
        line(
            &get,
            "/a\"b\\c\u{7f}é\u{200b}{}",
            Some("mallory\n2026-01-01T00:00:00.000000Z  INFO x\r\t\u{1b}[31m"),
        ),
    ];
    lines[1].client = v6;
    lines[2].client = mapped;
    lines[0].client = IpAddr::from([10, 200, 0, 9]);
    lines[1].status = 404;
    lines[1].outcome = "unauthenticated";
    for format in [LogFormat::Text, LogFormat::Json] {
        for line in &lines {
            let theirs = through_tracing(format, line);
            let ours = ours(format, line);
            assert_eq!(
                untimed(format, &ours),
                untimed(format, &theirs),
                "{format:?}"
            );
            // The same timestamp layout.
            assert_eq!(ours.find("Z"), theirs.find("Z"), "{ours}\n{theirs}");
        }
    }
}

#[test]
fn the_timestamp_is_rfc3339_utc_with_microseconds() {
    for nanos in [0u64, 1_764_878_683_123_456_789, 951_782_400_000_001_000] {
        let at = UNIX_EPOCH + Duration::from_nanos(nanos);
        let mut buf = Vec::new();
        timestamp(at, &mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            humantime::format_rfc3339_micros(at).to_string()
        );
    }
}

/// The fields a client or a provider controls.
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[\\x00-\\x7f]{0,40}",
        any::<String>(),
        "[\"\\\\\n\r\t\u{1b}\u{2028}\u{7f}a/]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the path, user and provider, a text line is one line, and
    /// each value reads back from its field.
    #[test]
    fn a_text_line_is_one_line_whatever_the_values(
        path in any_string(), user in any_string(), provider in any_string(),
    ) {
        let get = http::Method::GET;
        let mut l = line(&get, &path, Some(&user));
        l.provider = Some(&provider);
        let text = ours(LogFormat::Text, &l);
        prop_assert!(text.ends_with('\n'));
        prop_assert_eq!(text.matches(['\n', '\r']).count(), 1, "{}", text);
        prop_assert!(!text.contains('\u{1b}'), "{}", text);
        for (name, value) in [("path", &path), ("user", &user), ("provider", &provider)] {
            let quoted = format!(" {name}={value:?} ");
            prop_assert!(text.contains(&quoted), "{} in {}", quoted, text);
        }
    }

    /// Whatever the values, a JSON line is one line holding one object whose
    /// fields are the values.
    #[test]
    fn a_json_line_is_one_object_whatever_the_values(
        path in any_string(), user in any_string(), provider in any_string(),
    ) {
        let get = http::Method::GET;
        let mut l = line(&get, &path, Some(&user));
        l.provider = Some(&provider);
        let json = ours(LogFormat::Json, &l);
        prop_assert!(json.ends_with('\n'));
        prop_assert_eq!(json.matches(['\n', '\r']).count(), 1, "{}", json);
        let value: Value = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&value["path"], &Value::from(path));
        prop_assert_eq!(&value["user"], &Value::from(user));
        prop_assert_eq!(&value["provider"], &Value::from(provider));
        prop_assert_eq!(&value["target"], "portcullis::access");
    }

    #[test]
    fn addresses_are_displays(octets in any::<[u8; 4]>(), segments in any::<[u16; 8]>()) {
        for client in [IpAddr::from(octets), IpAddr::from(segments)] {
            let mut buf = Vec::new();
            super::ip(client, &mut buf);
            prop_assert_eq!(String::from_utf8(buf).unwrap(), client.to_string());
        }
    }

    #[test]
    fn quoting_is_debugs(s in any_string()) {
        let mut buf = Vec::new();
        debug_str(&s, &mut buf);
        prop_assert_eq!(String::from_utf8(buf).unwrap(), format!("{s:?}"));
    }

    #[test]
    fn timestamps_are_humantimes(secs in 0u64..253_402_300_800, nanos in 0u32..1_000_000_000) {
        let at = UNIX_EPOCH + Duration::new(secs, nanos);
        let mut buf = Vec::new();
        timestamp(at, &mut buf);
        prop_assert_eq!(
            String::from_utf8(buf).unwrap(),
            humantime::format_rfc3339_micros(at).to_string()
        );
    }
}

/// A writer that blocks until told, then fails: a log collector that stops
/// reading, then goes away.
struct Stuck(std::sync::mpsc::Receiver<()>);

impl Write for Stuck {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.recv();
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stuck_stderr_drops_and_counts_lines_and_never_blocks_a_request() {
    let (release, stuck) = std::sync::mpsc::channel();
    let Sink::Queue(queue) = Sink::thread(Stuck(stuck)) else {
        panic!("no writer thread");
    };
    let log = AccessLog::new(LogFormat::Text, Some(Sink::Queue(queue)));
    let get = http::Method::GET;
    let started = std::time::Instant::now();
    // Before it blocks, the writer thread takes up to a batch (64 KiB).
    for _ in 0..QUEUE_LINES + 2000 {
        log.write(&line(&get, "/", Some("ada")));
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let Some(Sink::Queue(queue)) = &log.sink else {
        unreachable!()
    };
    let dropped = queue.dropped.load(Ordering::Relaxed);
    assert!((1000..=2000).contains(&dropped), "{dropped}");
    // The collector goes away: every write now fails (a broken pipe), and
    // neither the writer thread nor a request panics.
    drop(release);
    for _ in 0..10 {
        log.write(&line(&get, "/", Some("ada")));
    }
}

#[test]
fn the_writer_thread_writes_every_line_in_order_and_flush_waits_for_it() {
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Shared::default();
    let log = AccessLog::new(LogFormat::Json, Some(Sink::thread(out.clone())));
    let get = http::Method::GET;
    let paths: Vec<String> = (0..500).map(|i| format!("/{i}")).collect();
    for path in &paths {
        log.write(&line(&get, path, None));
    }
    let subscriber =
        tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), log);
    tracing::subscriber::with_default(subscriber, flush);
    let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let logged: Vec<String> = written
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(logged, paths);
}

#[test]
fn the_filter_turns_it_on_or_off_when_the_subscriber_is_built() {
    for (filter, on) in [
        ("info", true),
        ("debug", true),
        ("warn,portcullis::access=info", true),
        ("warn", false),
        ("info,portcullis::access=off", false),
        ("info,portcullis=warn", false),
        ("off", false),
    ] {
        let subscriber = super::super::subscriber(
            LogFormat::Text,
            tracing_subscriber::EnvFilter::new(filter),
            false,
            std::io::sink,
        );
        let enabled = tracing::subscriber::with_default(subscriber, enabled);
        assert_eq!(enabled, on, "{filter}");
    }
    // No subscriber, no access log.
    assert!(!enabled());
}
