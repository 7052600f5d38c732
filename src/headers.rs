//! Pure `HeaderMap` functions for the proxy path: hop-by-hop removal, spoofed
//! identity headers, `X-Forwarded-*`. No I/O, so every rule has a table test.

use std::net::IpAddr;
use std::sync::LazyLock;

use http::header::{CONNECTION, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Version};
use ipnet::IpNet;

/// Hop-by-hop headers that are never forwarded, besides those named in
/// `Connection` (RFC 9110 §7.6.1; `Keep-Alive` and `Proxy-Connection` are the
/// legacy ones every proxy still meets).
const HOP_BY_HOP: [&str; 4] = ["keep-alive", "proxy-connection", "te", "trailer"];

/// Removes `Connection`, every header it names, and the fixed hop-by-hop headers
/// (RFC 9110 §7.6.1), including `Upgrade`.
///
/// Call it before adding headers of your own: a client may name any header in
/// `Connection`, and whatever it names goes.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, false);
}

/// Like [`strip_hop_by_hop`], for an HTTP/1.1 upgrade (a request that passed
/// [`is_upgrade_request`], or its `101` answer): keeps `Upgrade` and leaves
/// `Connection: upgrade`, which the next hop needs to switch protocols.
pub fn strip_hop_by_hop_keep_upgrade(headers: &mut HeaderMap) {
    strip(headers, true);
    if headers.contains_key(UPGRADE) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn strip(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Names are looked up as `&str`, which allocates nothing, where a
    // `HeaderName` for a non-standard name such as `keep-alive` (in nearly
    // every upstream response) would.
    match headers.get_all(CONNECTION).iter().count() {
        0 => {}
        // The usual case: one value, taken out of the map, no list needed.
        1 => {
            if let Some(listed) = headers.remove(CONNECTION) {
                remove_listed(headers, [listed].iter(), keep_upgrade);
            }
        }
        // Cloned (a reference count each) so the headers they name can be
        // removed while reading them.
        _ => {
            let listed: Vec<HeaderValue> = headers.get_all(CONNECTION).iter().cloned().collect();
            headers.remove(CONNECTION);
            remove_listed(headers, listed.iter(), keep_upgrade);
        }
    }
    // One pass over the names, not a lookup per fixed hop-by-hop header: most
    // messages carry none.
    let fixed = |name: &HeaderName| {
        name == TRANSFER_ENCODING
            || (name == UPGRADE && !keep_upgrade)
            || HOP_BY_HOP.contains(&name.as_str())
    };
    if headers.keys().any(fixed) {
        let found: Vec<HeaderName> = headers.keys().filter(|n| fixed(n)).cloned().collect();
        for name in found {
            headers.remove(name);
        }
    }
}

/// Removes the headers named in `Connection` values.
fn remove_listed<'v>(
    headers: &mut HeaderMap,
    listed: impl Iterator<Item = &'v HeaderValue>,
    keep_upgrade: bool,
) {
    let tokens = listed
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .filter_map(|token| std::str::from_utf8(token.trim_ascii()).ok());
    for name in tokens {
        if !(keep_upgrade && name.eq_ignore_ascii_case(UPGRADE.as_str())) {
            headers.remove(name);
        }
    }
}

/// An HTTP/1.1 request asking to switch protocols (WebSocket and the like):
/// `Connection` lists `upgrade` and `Upgrade` is present. `h2c` is refused:
/// the upstream leg is HTTP/1.1 and an h2c switch cannot be tunnelled blindly.
pub fn is_upgrade_request<B>(req: &http::Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && lists_token(req.headers(), &CONNECTION, "upgrade")
        && req.headers().contains_key(UPGRADE)
        && !lists_token(req.headers(), &UPGRADE, "h2c")
}

/// Whether any `name` header holds `token` in its comma-separated list
/// (case-insensitive). For `Upgrade`, `websocket/13` counts as `websocket`.
pub fn lists_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(|item| {
            item.split(|&b| b == b'/')
                .next()
                .unwrap_or_default()
                .trim_ascii()
        })
        .any(|item| item.eq_ignore_ascii_case(token.as_bytes()))
}

/// Settles which host a request is for, before anything reads `Host`, or says
/// why the request is refused (400):
///
/// - more than one `Host`, or one that is not a host (RFC 9112 §3.2);
/// - HTTP/1.1 without `Host` (RFC 9112 §3.2);
/// - an absolute-form target (`GET http://a.example/x`): its authority is the
///   host, and `Host` becomes it (RFC 9112 §3.2.2); with user info, refused;
/// - HTTP/2: user info in `:authority` (RFC 9113 §8.3.1), or a `host` header
///   naming another host than `:authority` (ibid.: "malformed").
///
/// Allocates only to rewrite an absolute-form request's `Host`.
pub fn settle_host<B>(req: &mut http::Request<B>) -> Result<(), &'static str> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("The request has more than one Host header.");
    }
    if host.is_some_and(|host| !is_host(host.as_bytes())) {
        return Err("The Host header is not a host name.");
    }
    let authority = req.uri().authority();
    if authority.is_some_and(|a| a.as_str().contains('@')) {
        return Err("The request's authority carries user info.");
    }
    if req.version() >= Version::HTTP_2 {
        return match (authority, host) {
            (Some(authority), Some(host))
                if !host
                    .as_bytes()
                    .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
            {
                Err("The Host header names another host than :authority.")
            }
            _ => Ok(()),
        };
    }
    match authority {
        // Absolute-form (or CONNECT's authority-form): the target names the host.
        Some(authority) => {
            let value = HeaderValue::from_str(authority.as_str())
                .map_err(|_| "The request's authority is not a host name.")?;
            req.headers_mut().insert(HOST, value);
            Ok(())
        }
        None if host.is_none() && req.version() == Version::HTTP_11 => {
            Err("An HTTP/1.1 request needs a Host header.")
        }
        None => Ok(()),
    }
}

/// `uri-host [ ":" port ]` as far as its bytes go (RFC 3986 §3.2.2): a
/// registered name, an IPv4 address or an IP literal in brackets; empty is
/// allowed (RFC 9112 §3.2). No user info, path, query or whitespace.
fn is_host(value: &[u8]) -> bool {
    value.iter().all(|&b| HOST_BYTES[usize::from(b)])
}

/// The bytes [`is_host`] allows, as a table: it runs on every request.
const HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~!$&'()*+,;=:[]%";
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
};

/// Removes every header a client might send to impersonate what portcullis sets
/// (DESIGN §5): names compare case-insensitively with `_` taken as `-`, because
/// many servers and CGI gateways merge `X_Forwarded_User` into `X-Forwarded-User`.
#[derive(Debug, Clone, Default)]
pub struct SpoofGuard {
    /// Lower-case, `_` already turned into `-`.
    protected: Vec<Box<[u8]>>,
    /// The protected names' lengths (bit `len`, 63 for 63 and longer) and
    /// normalised first bytes: most request headers fail one of the two, so
    /// they are never compared with every name (it was 2k instructions a
    /// request).
    lengths: u64,
    first_bytes: [u64; 4],
}

impl SpoofGuard {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut protected: Vec<Box<[u8]>> = names
            .into_iter()
            .map(|name| normalise(name.as_bytes()).into())
            .collect();
        protected.sort();
        protected.dedup();
        let (mut lengths, mut first_bytes) = (0, [0; 4]);
        for name in &protected {
            lengths |= length_bit(name);
            if let Some(&first) = name.first() {
                first_bytes[usize::from(first / 64)] |= 1 << (first % 64);
            }
        }
        Self {
            protected,
            lengths,
            first_bytes,
        }
    }

    /// Allocates only when a spoofed header is found.
    pub fn strip(&self, headers: &mut HeaderMap) {
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.protects(name.as_str()))
            .cloned()
            .collect();
        for name in spoofed {
            headers.remove(name);
        }
    }

    pub fn protects(&self, name: &str) -> bool {
        let name = name.as_bytes();
        let Some(&first) = name.first() else {
            return false;
        };
        let first = normalise_byte(first);
        if self.lengths & length_bit(name) == 0
            || self.first_bytes[usize::from(first / 64)] & (1 << (first % 64)) == 0
        {
            return false;
        }
        // A `HeaderName` is lower-case: unless it has a `_`, plain equality
        // decides (portcullis' own `X-Forwarded-User` against `X-Forwarded-For`
        // and the like, once per request).
        if name.iter().any(|&b| b == b'_' || b.is_ascii_uppercase()) {
            self.protected.iter().any(|p| same_name(p, name))
        } else {
            self.protected.iter().any(|p| **p == *name)
        }
    }
}

fn length_bit(name: &[u8]) -> u64 {
    1 << name.len().min(63)
}

fn normalise(name: &[u8]) -> Vec<u8> {
    name.iter().map(|&b| normalise_byte(b)).collect()
}

fn normalise_byte(b: u8) -> u8 {
    if b == b'_' {
        b'-'
    } else {
        b.to_ascii_lowercase()
    }
}

/// `protected` is already normalised; `name` is compared byte by byte.
fn same_name(protected: &[u8], name: &[u8]) -> bool {
    protected.len() == name.len()
        && protected
            .iter()
            .zip(name)
            .all(|(&p, &b)| p == normalise_byte(b))
}

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// Claims about the client or the original request that only a trusted proxy
/// may make (DESIGN §8 item 4). From anyone else they are dropped, in any
/// spelling, so the upstream cannot be misled either.
pub const FORWARDING_HEADERS: [&str; 9] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-real-ip",
    "forwarded",
];

static FORWARDING_CLAIMS: LazyLock<SpoofGuard> =
    LazyLock::new(|| SpoofGuard::new(FORWARDING_HEADERS));

/// A connection's peer address, with the `X-Forwarded-For` entry it becomes,
/// formatted once per connection rather than on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIp {
    ip: IpAddr,
    header: HeaderValue,
}

impl PeerIp {
    pub fn new(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        let header = HeaderValue::try_from(ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { ip, header }
    }

    /// Canonical: an IPv4-mapped IPv6 address is its IPv4 address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host` for the upstream.
///
/// From a trusted proxy, its chain is kept and `peer` appended, and its
/// `-Proto`/`-Host` are kept (filled in when missing). From anyone else every
/// forwarding claim is dropped and the three are set from the connection:
/// `peer`, `proto` (`"http"` or `"https"`) and the `Host` header. For an HTTP/2
/// request, put `:authority` into `Host` first.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &PeerIp,
    trusted_proxies: &[IpNet],
    proto: &'static str,
) {
    let chain = if is_trusted(peer.ip, trusted_proxies) {
        let mut chain = Vec::new();
        for value in headers.get_all(X_FORWARDED_FOR) {
            chain.extend_from_slice(value.as_bytes());
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(peer.header.as_bytes());
        HeaderValue::from_bytes(&chain).unwrap_or_else(|_| peer.header.clone())
    } else {
        FORWARDING_CLAIMS.strip(headers);
        peer.header.clone()
    };
    headers.insert(HeaderName::from_static(X_FORWARDED_FOR), chain);
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(
            HeaderName::from_static(X_FORWARDED_PROTO),
            HeaderValue::from_static(proto),
        );
    }
    if !headers.contains_key(X_FORWARDED_HOST)
        && let Some(host) = headers.get(HOST).cloned()
    {
        headers.insert(HeaderName::from_static(X_FORWARDED_HOST), host);
    }
}

/// The client's address: `peer`, or from a trusted proxy the nearest address
/// in its `X-Forwarded-For` chain that is not a trusted proxy itself (the
/// addresses before it were written by the client, and prove nothing).
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted_proxies: &[IpNet]) -> IpAddr {
    let mut client = peer;
    let mut hops = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|value| value.to_str().unwrap_or("").rsplit(','));
    while is_trusted(client, trusted_proxies) {
        match hops
            .next()
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
        {
            Some(ip) => client = ip.to_canonical(),
            None => break,
        }
    }
    client
}

/// Whether `ip` (canonical: see [`PeerIp::ip`]) is one of `trusted_proxies`.
pub fn is_trusted(ip: IpAddr, trusted_proxies: &[IpNet]) -> bool {
    trusted_proxies.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
