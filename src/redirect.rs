//! Where to send the browser after sign-in or sign-out (`rd`): only back to this
//! site, never elsewhere (DESIGN §8.1, the open-redirect checklist).

use std::borrow::Cow;
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
