//! Where to send the browser after sign-in or sign-out (`rd`): only back to this
//! site, never elsewhere (DESIGN §8.1, the open-redirect checklist).

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use percent_encoding::percent_decode_str;
use url::Url;

/// Longer targets fall back to `/`: `rd` travels in the flow cookie, which must
/// stay under the browser's 4 KB.
const MAX_RD_LEN: usize = 2048;
/// Rounds of percent-decoding checked, against intermediaries that decode again;
/// a target that is still encoded after them is refused.
const DECODE_ROUNDS: usize = 3;
/// Characters some browsers and normalisers fold into `/` or `\` (fullwidth,
/// small and mathematical forms). Refused anywhere: no honest path needs them.
const SLASH_LOOKALIKES: [char; 7] = [
    '\u{FF0F}', // FULLWIDTH SOLIDUS
    '\u{FF3C}', // FULLWIDTH REVERSE SOLIDUS
    '\u{FE68}', // SMALL REVERSE SOLIDUS
    '\u{2215}', // DIVISION SLASH
    '\u{2216}', // SET MINUS
    '\u{2044}', // FRACTION SLASH
    '\u{29F8}', // BIG SOLIDUS
];

static BASE: LazyLock<Url> =
    LazyLock::new(|| Url::parse("http://portcullis.invalid/").expect("a fixed, valid base URL"));

/// `rd` when it is a path on this site, else `/`.
pub fn safe_rd(rd: Option<&str>) -> String {
    match rd {
        Some(rd) if is_safe_rd(rd) => rd.to_owned(),
        _ => "/".to_owned(),
    }
}

/// `rd` when it is a path on this site, or an absolute `http(s)://` URL
/// that `own` accepts (the operator's own app hosts: see
/// `Routes::sends_back_to`); else `/`. The URL is given back as the WHATWG
/// parser (which browsers share) serialises it, never as sent.
pub fn safe_rd_or_own_url(rd: Option<&str>, own: impl Fn(&Url) -> bool) -> String {
    match rd.and_then(|rd| own_url(rd, own)) {
        Some(url) => url,
        None => safe_rd(rd),
    }
}

/// An absolute URL to one of the operator's hosts: `http://` or `https://`
/// (any case) and nothing a browser would drop or fold (whitespace, control
/// characters, `\`, slash look-alikes); no user info; a host name (not an
/// IP); a path and query that pass as a same-site `rd`; and `own`.
fn own_url(rd: &str, own: impl Fn(&Url) -> bool) -> Option<String> {
    if rd.len() > MAX_RD_LEN {
        return None;
    }
    let scheme = rd.get(..8).unwrap_or(rd).to_ascii_lowercase();
    if !(scheme.starts_with("http://") || scheme.starts_with("https://")) {
        return None;
    }
    let refused =
        |c: char| c.is_whitespace() || c.is_control() || c == '\\' || SLASH_LOOKALIKES.contains(&c);
    if rd.chars().any(refused) {
        return None;
    }
    let url = Url::parse(rd).ok()?;
    if !url.username().is_empty()
        || url.password().is_some()
        || !matches!(url.host(), Some(url::Host::Domain(_)))
    {
        return None;
    }
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    (is_safe_rd(path) && own(&url)).then(|| url.as_str().to_owned())
}

/// One entry of `[access] allowed_redirect_domains`: a host an absolute `rd`
/// may lead to besides the routes' own hosts. `app.example.com` is that host
/// alone; `.example.com` is `example.com` and every subdomain of it (label
/// boundary: never `evil-example.com` nor `example.com.evil`), as in
/// oauth2-proxy's `--whitelist-domain`. Without a port only the scheme's
/// default port passes; `:8443` that port alone; `:*` any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower-case ASCII (punycode for IDN), no leading or trailing dot.
    name: Box<str>,
    subdomains: bool,
    port: AllowedPort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AllowedPort {
    SchemeDefault,
    Exactly(u16),
    Any,
}

impl AllowedHost {
    /// Parses one entry as written in the configuration; the error says why
    /// it is not one.
    pub fn parse(written: &str) -> Result<Self, &'static str> {
        let lower = written.trim().to_ascii_lowercase();
        if lower.contains("://") || lower.contains(['/', '@', '?', '#', '\\']) {
            return Err(
                "must be a host name, optionally with a port: no scheme, path or user info",
            );
        }
        if lower.starts_with("*.") {
            return Err("write subdomains with a leading dot: \".example.com\" (no `*`)");
        }
        let (subdomains, rest) = match lower.strip_prefix('.') {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let (name, port) = match rest.split_once(':') {
            None => (rest, AllowedPort::SchemeDefault),
            Some((name, "*")) => (name, AllowedPort::Any),
            // Written back the same, so that `:080` or `:+80` is refused.
            Some((name, written)) => match written.parse::<u16>() {
                Ok(port) if port > 0 && port.to_string() == written => {
                    (name, AllowedPort::Exactly(port))
                }
                _ => return Err("has a port that is not a number from 1 to 65535, nor `*`"),
            },
        };
        let label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label) {
            return Err(
                "is not a host name, e.g. \"app.example.com\", \".example.com\" or \"app.example.com:8443\" (ASCII: write an IDN in punycode, `xn--`; no trailing dot)",
            );
        }
        if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err("is an IP address: only host names are allowed");
        }
        Ok(Self {
            name: name.into(),
            subdomains,
            port,
        })
    }

    /// Whether `url` (already parsed, with a domain host) is on this host and port.
    pub fn admits(&self, url: &Url) -> bool {
        let Some(url::Host::Domain(host)) = url.host() else {
            return false;
        };
        let name = &*self.name;
        // No empty label anywhere (`a..example.com`, a trailing dot).
        if host.split('.').any(str::is_empty) {
            return false;
        }
        let host_ok = host == name
            || (self.subdomains
                && host.len() > name.len() + 1
                && host.ends_with(name)
                && host.as_bytes()[host.len() - name.len() - 1] == b'.');
        let port_ok = match self.port {
            AllowedPort::Any => true,
            AllowedPort::Exactly(port) => url.port_or_known_default() == Some(port),
            AllowedPort::SchemeDefault => url.port().is_none(),
        };
        host_ok && port_ok
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subdomains {
            f.write_str(".")?;
        }
        f.write_str(&self.name)?;
        match self.port {
            AllowedPort::SchemeDefault => Ok(()),
            AllowedPort::Exactly(port) => write!(f, ":{port}"),
            AllowedPort::Any => f.write_str(":*"),
        }
    }
}

impl serde::Serialize for AllowedHost {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Whether `rd` is a same-origin, absolute-path reference (RFC 3986 §4.2) that no
/// browser or decoding intermediary can turn into another origin.
pub fn is_safe_rd(rd: &str) -> bool {
    if rd.len() > MAX_RD_LEN || !is_plain_path(rd, false) {
        return false;
    }
    let mut form = Cow::Borrowed(rd);
    for _ in 0..DECODE_ROUNDS {
        let decoded: String = percent_decode_str(&form).decode_utf8_lossy().into_owned();
        if decoded == *form {
            return true;
        }
        if !is_plain_path(&decoded, true) {
            return false;
        }
        form = Cow::Owned(decoded);
    }
    // Still encoded after every round checked: no honest link nests this deep.
    percent_decode_str(&form).decode_utf8_lossy() == *form
}

/// One form of `rd`, raw or decoded. Browsers drop tabs and newlines anywhere and
/// treat `\` as `/` (WHATWG URL §4.4), so `/\t/x` and `/\x` are `//x`, a
/// network-path reference to host `x` (RFC 3986 §4.2). A decoded form may hold
/// spaces (`%20` is an honest path byte) but must not start like `//` once
/// whitespace is dropped.
fn is_plain_path(form: &str, decoded: bool) -> bool {
    let mut chars = form.chars();
    if chars.next() != Some('/') {
        return false;
    }
    let second = if decoded {
        chars.find(|c| !c.is_whitespace())
    } else {
        chars.next()
    };
    if matches!(second, Some('/' | '\\')) {
        return false;
    }
    let refused = |c: char| {
        c == '\\'
            || c.is_control()
            || SLASH_LOOKALIKES.contains(&c)
            || (!decoded && c.is_whitespace())
    };
    if form.chars().any(refused) {
        return false;
    }
    stays_on_site(form)
}

/// Resolved against a fixed base, the target keeps its origin and its path does
/// not start with `//` (as `/.//x` or `/../..//x` would after dot removal). The
/// leading `/` already rules out a scheme.
fn stays_on_site(form: &str) -> bool {
    BASE.join(form).is_ok_and(|url| {
        url.origin() == BASE.origin()
            && url.username().is_empty()
            && url.password().is_none()
            && !url.path().starts_with("//")
    })
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
