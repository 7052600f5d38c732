//! The cookie session store: the whole session, sealed, in the `<name>`,
//! `<name>_1`, `<name>_2`, ... cookies (DESIGN §4, §8.10).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use super::keys::{CodecError, SessionKeys};
use super::{Opened, Session};
use crate::config::{SameSite, SessionConfig};
use crate::metrics::OpenedFrom;

/// Chunks read or written at most: a session past ~38 KB is refused rather than joined.
const MAX_CHUNKS: usize = 10;
/// RFC 6265 §6.1 asks browsers for at least 4096 bytes per cookie (name, value and
/// attributes); staying under 4000 leaves room for browsers that count differently.
const MAX_SET_COOKIE_LEN: usize = 4000;
const MAX_JOINED_LEN: usize = MAX_CHUNKS * MAX_SET_COOKIE_LEN;
/// Set-Cookie deletions in one response at most.
const MAX_DELETIONS: usize = 2 * MAX_CHUNKS;
/// Bytes of opened sessions kept (sealed value plus an estimate of the decoded
/// session): a few thousand typical sessions.
const OPENED_CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// An opened session not used for this long is forgotten; it opens again if it returns.
const OPENED_CACHE_IDLE: Duration = Duration::from_secs(600);
/// Removes a cookie (RFC 6265 §5.3 step 11); `Expires` for clients that ignore `Max-Age`.
pub(super) const DELETE: &str = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT";

/// What the request's session cookies held.
#[derive(Debug)]
pub struct Loaded {
    pub session: Option<Arc<Opened>>,
    /// Set-Cookie values deleting the session cookies the request carried, when
    /// they held no usable session.
    pub clear: Vec<HeaderValue>,
}

/// Reads and writes the session cookies and the sign-in flow cookies; owns the keys.
pub struct SessionCookies {
    pub(super) keys: SessionKeys,
    /// `session.cookie_name`: the session cookie, and `<name>_<n>` its chunks.
    pub(super) name: String,
    /// The base of flow cookie names: the session's, but `__Secure-` for a
    /// `__Host-` one, since flow cookies live under `/oauth2/` and a `__Host-`
    /// cookie must have `Path=/` (browsers refuse it otherwise).
    pub(super) flow_name: String,
    /// With a `__Host-` name, the same name unprefixed: what older versions
    /// wrote. Still recognised as portcullis' own, so it is kept from the upstream.
    unprefixed: Option<String>,
    pub(super) secure: bool,
    same_site: SameSite,
    domain: Option<String>,
    idle_timeout: Option<Duration>,
    /// Hashes of flow states already taken, so a callback works once (DESIGN §4).
    pub(super) consumed_flows: moka::sync::Cache<[u8; 32], ()>,
    /// Sessions already opened, by their exact sealed value: a browser sends
    /// the same cookie on every request, and decrypting and parsing it again
    /// each time was most of a signed-in request's own CPU. The same bytes
    /// always open to the same session under the same keys, so a hit is what
    /// opening would give; expiry is still checked on every request. Only
    /// values that opened are inserted, so strangers cannot fill it.
    opened: moka::sync::Cache<Bytes, Arc<Opened>, SealedTailHash>,
    pub(super) opened_count: crate::metrics::OpenedCount,
}

impl std::fmt::Debug for SessionCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCookies")
            .field("name", &self.name)
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .field("domain", &self.domain)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// A session too large for the cookies a browser sends back.
#[derive(Debug, thiserror::Error)]
#[error(
    "the session needs {0} cookies, more than the {MAX_CHUNKS} portcullis reads back; request fewer scopes or claims from the provider"
)]
pub struct TooLarge(usize);

/// Why a request's session cookies held no session; logged, never shown.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("session cookie chunks are missing, duplicated, out of order or too many")]
    Chunks,
    #[error("session cookie chunks are too large")]
    TooLarge,
    #[error("session cookie does not open: {0}")]
    Codec(#[from] CodecError),
    #[error("session cookie holds no session")]
    NotASession,
    #[error("{0}")]
    Unusable(&'static str),
}

impl SessionCookies {
    pub fn new(config: &SessionConfig) -> Self {
        Self {
            keys: SessionKeys::new(config),
            name: config.cookie_name.clone(),
            flow_name: flow_name(&config.cookie_name),
            unprefixed: config
                .cookie_name
                .strip_prefix(HOST_PREFIX)
                .map(str::to_owned),
            secure: config.secure,
            same_site: config.same_site,
            domain: config.domain.clone(),
            idle_timeout: config.idle_timeout,
            consumed_flows: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(super::flow::FLOW_LIFETIME_SECS))
                .build(),
            opened: moka::sync::Cache::builder()
                // The decoded session takes about as much again as its sealed form.
                .weigher(|sealed: &Bytes, _| opened_weight(sealed))
                .max_capacity(OPENED_CACHE_BYTES)
                .time_to_idle(OPENED_CACHE_IDLE)
                .build_with_hasher(SealedTailHash::default()),
            opened_count: Default::default(),
        }
    }

    /// The session the request carries, if any is valid at `now`.
    pub fn load(&self, headers: &HeaderMap, now: u64) -> Loaded {
        let carried = self.carried_chunks(headers);
        if carried.is_empty() {
            return Loaded {
                session: None,
                clear: Vec::new(),
            };
        }
        match self.decode(&carried, now) {
            Ok(session) => Loaded {
                session: Some(session),
                clear: Vec::new(),
            },
            Err(reason) => {
                tracing::debug!(%reason, "no session from the request's cookies");
                Loaded {
                    session: None,
                    clear: self.deletions(carried.iter().map(|c| c.name)),
                }
            }
        }
    }

    /// Set-Cookie values writing `session`, and deleting chunks it no longer
    /// needs; an error, and nothing written, when it needs more cookies than a
    /// request may carry back (it could never be loaded).
    pub fn store(
        &self,
        session: &Session,
        request_headers: &HeaderMap,
    ) -> Result<Vec<HeaderValue>, TooLarge> {
        self.store_at(session, request_headers, crate::now_unix())
    }

    fn store_at(
        &self,
        session: &Session,
        request_headers: &HeaderMap,
        now: u64,
    ) -> Result<Vec<HeaderValue>, TooLarge> {
        // A Session has only string map keys and plain values: serialising cannot fail.
        let json = serde_json::to_vec(session).expect("a Session always serialises");
        let sealed = self.keys.seal(&self.name, &json);
        let attributes = self.attributes(&format!(
            "Max-Age={}",
            session.expires_at.saturating_sub(now)
        ));
        let longest_name = self.chunk_name(MAX_CHUNKS).len();
        let room = MAX_SET_COOKIE_LEN
            .saturating_sub(longest_name + 1 + attributes.len())
            .max(1);
        let chunks: Vec<&str> = sealed
            .as_bytes()
            .chunks(room)
            // base64url is ASCII, so every split is on a char boundary.
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        if chunks.len() > MAX_CHUNKS {
            return Err(TooLarge(chunks.len()));
        }
        let written: Vec<String> = (0..chunks.len()).map(|i| self.chunk_name(i)).collect();
        let mut out: Vec<HeaderValue> = written
            .iter()
            .zip(&chunks)
            .filter_map(|(name, chunk)| set_cookie(format!("{name}={chunk}{attributes}")))
            .collect();
        let stale = self
            .carried_chunks(request_headers)
            .into_iter()
            .map(|c| c.name)
            .filter(|name| !written.iter().any(|w| w.as_bytes() == *name));
        out.extend(self.deletions(stale));
        Ok(out)
    }

    /// The Redis store's cookie: `handle` (sealed, about a hundred bytes: one
    /// cookie) as the session cookie for `max_age` seconds, deleting any
    /// chunk the request carried (left from the cookie store).
    pub(super) fn store_handle(
        &self,
        handle: &str,
        max_age: u64,
        request_headers: &HeaderMap,
    ) -> Vec<HeaderValue> {
        let attributes = self.attributes(&format!("Max-Age={max_age}"));
        let mut out: Vec<HeaderValue> = set_cookie(format!("{}={handle}{attributes}", self.name))
            .into_iter()
            .collect();
        let chunks = self.carried_chunks(request_headers);
        out.extend(
            self.deletions(
                chunks
                    .iter()
                    .map(|c| c.name)
                    .filter(|n| *n != self.name.as_bytes()),
            ),
        );
        out
    }

    /// The Redis store's cookie as the request carries it: `None` without a
    /// session cookie, `Some(None)` when it is not one plain cookie (chunks,
    /// duplicates: not a handle), else its value.
    pub(super) fn carried_handle<'h>(&self, headers: &'h HeaderMap) -> Option<Option<&'h [u8]>> {
        match self.carried_chunks(headers).as_slice() {
            [] => None,
            [only] if only.index == Some(0) => Some(Some(only.value)),
            _ => Some(None),
        }
    }

    /// Set-Cookie values deleting every session chunk the request carried, and the base cookie.
    pub fn clear(&self, request_headers: &HeaderMap) -> Vec<HeaderValue> {
        let carried = self.carried_chunks(request_headers);
        let names = std::iter::once(self.name.as_bytes()).chain(carried.iter().map(|c| c.name));
        self.deletions(names)
    }

    /// Set-Cookie values deleting every portcullis cookie the request carried:
    /// the session's and the sign-in flows'.
    pub fn clear_all(&self, request_headers: &HeaderMap) -> Vec<HeaderValue> {
        let mut all = self.clear(request_headers);
        all.extend(self.clear_flows(request_headers));
        all
    }

    /// Bytes the request's `Cookie` headers spend on portcullis' cookies, each
    /// with its `; `: `(flow cookies, session chunks)`.
    pub fn own_cookie_bytes(&self, headers: &HeaderMap) -> (usize, usize) {
        let (mut flows, mut session) = (0, 0);
        for pair in cookie_pairs(headers) {
            // The pair's name and value, `=` and `; `.
            let len = pair.name.len() + pair.value.len() + 3;
            if self.is_flow_name(pair.name) {
                flows += len;
            } else if self.chunk_suffix(pair.name).is_some() {
                session += len;
            }
        }
        (flows, session)
    }

    /// Removes portcullis' cookies from the `Cookie` header(s) bound upstream; the
    /// app's cookies are kept byte for byte, joined into one header. Several
    /// `Cookie` fields (HTTP/2 sends each cookie as its own, RFC 9113 §8.2.3)
    /// are joined even when none is portcullis': HTTP/1.1 allows one `Cookie`
    /// header (RFC 6265 §5.4), and the upstream leg is HTTP/1.1.
    pub fn strip_own_cookies(&self, headers: &mut HeaderMap) {
        let several = headers.get_all(COOKIE).iter().nth(1).is_some();
        let mut own = false;
        // A piece without `=` is a nameless cookie (RFC 6265bis §5.6 step 3): not ours.
        let kept: Vec<&[u8]> = cookie_pieces(headers)
            .filter(|piece| match memchr::memchr(b'=', piece) {
                Some(eq) if self.is_own_name(piece[..eq].trim_ascii()) => {
                    own = true;
                    false
                }
                _ => true,
            })
            .collect();
        if !own && !several {
            return;
        }
        let joined = kept.join(&b"; "[..]);
        headers.remove(COOKIE);
        if joined.is_empty() {
            return;
        }
        // Every byte came from a valid header value, so the join is one too.
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            headers.insert(COOKIE, value);
        }
    }

    /// Whether `name` is one of portcullis' cookies: a session chunk or a flow cookie.
    #[cfg(test)]
    pub fn is_own_cookie(&self, name: &str) -> bool {
        self.is_own_name(name.as_bytes())
    }

    fn is_own_name(&self, name: &[u8]) -> bool {
        self.chunk_suffix(name).is_some()
            || self.is_flow_name(name)
            || self
                .unprefixed
                .as_ref()
                .is_some_and(|base| suffix_of(base, name).is_some())
    }

    /// `Some("")` for the base name, `Some(digits)` for `<name>_<digits>`.
    fn chunk_suffix<'a>(&self, name: &'a [u8]) -> Option<&'a [u8]> {
        suffix_of(&self.name, name)
    }

    /// `<name>` for chunk 0, `<name>_<i>` after.
    fn chunk_name(&self, index: usize) -> String {
        if index == 0 {
            self.name.clone()
        } else {
            format!("{}_{index}", self.name)
        }
    }

    /// The session chunks in the request, in the order sent.
    fn carried_chunks<'h>(&self, headers: &'h HeaderMap) -> Vec<Chunk<'h>> {
        cookie_pairs(headers)
            .filter_map(|p| {
                let suffix = self.chunk_suffix(p.name)?;
                Some(Chunk {
                    name: p.name,
                    index: chunk_index(suffix),
                    value: p.value,
                })
            })
            .collect()
    }

    fn decode(&self, carried: &[Chunk<'_>], now: u64) -> Result<Arc<Opened>, Refused> {
        if carried.len() > MAX_CHUNKS {
            return Err(Refused::Chunks);
        }
        let mut slots: [Option<&[u8]>; MAX_CHUNKS] = [None; MAX_CHUNKS];
        for chunk in carried {
            let slot = chunk
                .index
                .and_then(|i| slots.get_mut(i))
                .ok_or(Refused::Chunks)?;
            if slot.replace(chunk.value).is_some() {
                return Err(Refused::Chunks);
            }
        }
        // Chunks 0..n, each once, none after a gap.
        let values = &slots[..carried.len()];
        if values.iter().any(Option::is_none) {
            return Err(Refused::Chunks);
        }
        if values.iter().flatten().map(|v| v.len()).sum::<usize>() > MAX_JOINED_LEN {
            return Err(Refused::TooLarge);
        }
        // One cookie, the common case, is used in place; chunks are joined first.
        let sealed: Cow<'_, [u8]> = match values {
            [Some(only)] => Cow::Borrowed(only),
            chunks => Cow::Owned(
                chunks
                    .iter()
                    .flatten()
                    .copied()
                    .collect::<Vec<_>>()
                    .concat(),
            ),
        };
        let cached = self.opened.get(&*sealed);
        let opened = match &cached {
            Some(opened) => {
                self.opened_count.count(OpenedFrom::Cache);
                Arc::clone(opened)
            }
            None => {
                let plaintext = self.keys.open(&self.name, &sealed)?;
                let session =
                    serde_json::from_slice(&plaintext).map_err(|_| Refused::NotASession)?;
                self.opened_count.count(OpenedFrom::Decrypted);
                Arc::new(Opened::new(session))
            }
        };
        let idle = self.idle_timeout.map(|idle| idle.as_secs());
        if let Some(reason) = opened.session.unusable_at(now, idle) {
            return Err(Refused::Unusable(reason));
        }
        // Only a session that is usable now is remembered.
        if cached.is_none() {
            let key = Bytes::from(sealed.into_owned());
            self.opened.insert(key, Arc::clone(&opened));
        }
        Ok(opened)
    }

    /// `; Path=/; ...` for session cookies, with `max_age` (`Max-Age=N` or [`DELETE`]).
    fn attributes(&self, max_age: &str) -> String {
        let mut a = String::from("; Path=/");
        if let Some(domain) = &self.domain {
            a.push_str("; Domain=");
            a.push_str(domain);
        }
        a.push_str("; ");
        a.push_str(max_age);
        a.push_str("; HttpOnly");
        if self.secure {
            a.push_str("; Secure");
        }
        a.push_str(match self.same_site {
            SameSite::Lax => "; SameSite=Lax",
            SameSite::Strict => "; SameSite=Strict",
            SameSite::None => "; SameSite=None",
        });
        a
    }

    /// Set-Cookie values deleting the session cookies `names` (each once): the
    /// ones portcullis writes first, and at most [`MAX_DELETIONS`] in all, so a
    /// request stuffed with look-alike names cannot make a huge response (the
    /// rest go on later requests).
    fn deletions<'a>(&self, names: impl IntoIterator<Item = &'a [u8]>) -> Vec<HeaderValue> {
        let attributes = self.attributes(DELETE);
        let written_by_us = |name: &[u8]| {
            self.chunk_suffix(name)
                .and_then(chunk_index)
                .is_some_and(|i| i <= MAX_CHUNKS)
        };
        let mut names: Vec<&[u8]> = names.into_iter().collect();
        // Stable: in the order sent, within each kind.
        names.sort_by_key(|name| !written_by_us(name));
        let mut seen = std::collections::HashSet::new();
        names
            .into_iter()
            .filter(|name| seen.insert(*name))
            .take(MAX_DELETIONS)
            .filter_map(|name| {
                let name = std::str::from_utf8(name).ok()?;
                set_cookie(format!("{name}={attributes}"))
            })
            .collect()
    }
}

/// `Some("")` for `base`, `Some(digits)` for `<base>_<digits>`.
fn suffix_of<'a>(base: &str, name: &'a [u8]) -> Option<&'a [u8]> {
    let rest = name.strip_prefix(base.as_bytes())?;
    if rest.is_empty() {
        return Some(rest);
    }
    let digits = rest.strip_prefix(b"_")?;
    // At most three digits, as `chunk_index` reads them: a longer name is
    // not one portcullis could have written.
    (matches!(digits.len(), 1..=3) && digits.iter().all(u8::is_ascii_digit)).then_some(digits)
}

/// The prefix that binds a cookie to its host (RFC 6265bis §4.1.3.2):
/// `Secure`, `Path=/`, no `Domain`, so no sibling subdomain can set or shadow it.
pub const HOST_PREFIX: &str = "__Host-";

/// The base of flow cookie names for the session cookie `name`: see
/// [`SessionCookies::flow_name`].
fn flow_name(name: &str) -> String {
    match name.strip_prefix(HOST_PREFIX) {
        Some(rest) => format!("__Secure-{rest}"),
        None => name.to_owned(),
    }
}

/// Hashes a sealed value by its length and last [`SEALED_TAIL`] bytes: the
/// end of the AEAD tag, which is already unpredictable, so hashing the whole
/// value (hundreds of bytes on every request) buys no spread. Keys are still
/// compared whole, and only values that opened are inserted, so a client
/// choosing tails can lengthen no bucket but its own.
#[derive(Default, Clone)]
pub(super) struct SealedTailHash(foldhash::fast::RandomState);

const SEALED_TAIL: usize = 24;

impl std::hash::BuildHasher for SealedTailHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

pub(super) struct TailHasher(foldhash::fast::FoldHasher<'static>);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0
            .write(&bytes[bytes.len().saturating_sub(SEALED_TAIL)..]);
    }
    fn write_usize(&mut self, n: usize) {
        self.0.write_usize(n);
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// The opened-session cache's weight of an entry: its sealed value, and about
/// as much again for the decoded session.
fn opened_weight(sealed: &[u8]) -> u32 {
    u32::try_from(sealed.len() * 2).unwrap_or(u32::MAX)
}

/// One session cookie in a request; `index` is `None` for names like `<name>_01`.
struct Chunk<'h> {
    name: &'h [u8],
    index: Option<usize>,
    value: &'h [u8],
}

fn chunk_index(suffix: &[u8]) -> Option<usize> {
    if suffix.is_empty() {
        return Some(0);
    }
    if suffix.starts_with(b"0") || suffix.len() > 3 {
        return None;
    }
    std::str::from_utf8(suffix)
        .ok()?
        .parse()
        .ok()
        .filter(|&i| i >= 1)
}

/// One `name=value` pair of a `Cookie` header.
pub(super) struct Pair<'h> {
    pub(super) name: &'h [u8],
    pub(super) value: &'h [u8],
}

/// The pieces between `;` of every `Cookie` header, as sent but for surrounding
/// whitespace (RFC 6265 §4.2.1; HTTP/2 may split them over several headers, RFC
/// 9113 §8.2.3). Nothing here trusts the header to be well formed.
fn cookie_pieces(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| split_at_semicolons(value.as_bytes()))
        .map(<[u8]>::trim_ascii)
        .filter(|piece| !piece.is_empty())
}

/// `bytes` split at each `;`, found with memchr: the Cookie header is the
/// longest one on a signed-in request and is scanned on every request.
fn split_at_semicolons(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b';', r) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// The `name=value` pairs of the request's cookies; pieces without `=` are skipped.
pub(super) fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = Pair<'_>> {
    cookie_pieces(headers).filter_map(|piece| {
        let eq = memchr::memchr(b'=', piece)?;
        Some(Pair {
            name: piece[..eq].trim_ascii(),
            value: piece[eq + 1..].trim_ascii(),
        })
    })
}

/// A Set-Cookie value. Names are checked in config and values are base64url, so only
/// a `session.domain` with control characters can fail here.
pub(super) fn set_cookie(cookie: String) -> Option<HeaderValue> {
    match HeaderValue::try_from(cookie) {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::error!(
                "cannot build a Set-Cookie header; check session.domain for stray characters"
            );
            None
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
