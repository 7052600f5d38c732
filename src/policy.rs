//! Access policy (DESIGN §6): the first `[[rules]]` entry matching method and the
//! normalised path, then the global `[access]` policy for signed-in users.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::Method;

use crate::config::{AccessConfig, Config, RuleConfig};
use crate::identity::Identity;

/// How often `access.allowed_emails_file` is checked for changes.
const EMAILS_FILE_CHECK: Duration = Duration::from_secs(5);

/// What the matched rule asks of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement<'a> {
    /// No session needed.
    Public,
    /// A signed-in user who passes the global policy and, if listed, is in one of `groups`.
    SignedIn { groups: &'a [String], api: bool },
}

/// Why a signed-in user was refused. Shown to that user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("your email address is not verified at the identity provider")]
    EmailNotVerified,
    #[error("your email address is not allowed to use this application")]
    EmailNotAllowed,
    #[error("you are not in a group allowed to use this application")]
    NotInAllowedGroup,
    #[error("you are not in a group allowed to use this page")]
    NotInRuleGroup,
}

pub struct Policy {
    rules: Vec<Rule>,
    access: AccessConfig,
    /// `allowed_emails` plus the lines of `allowed_emails_file`, swapped whole on change.
    emails: Arc<ArcSwap<HashSet<String>>>,
}

struct Rule {
    pattern: Pattern,
    methods: Vec<Method>,
    public: bool,
    groups: Vec<String>,
    api: bool,
}

enum Pattern {
    Exact(String),
    Prefix(String),
    /// `bare`: for a glob ending in `/**`, the same glob without it, so
    /// `/admin/**` covers `/admin` too.
    Glob {
        parts: Vec<GlobPart>,
        bare: Option<Vec<GlobPart>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum GlobPart {
    Literal(String),
    /// `*`: any run of characters within one segment.
    Star,
    /// `**`: any run of characters, slashes included.
    DoubleStar,
}

impl Policy {
    pub fn new(config: &Config) -> std::io::Result<Self> {
        let access = config.access.clone();
        let emails = Arc::new(ArcSwap::from_pointee(read_emails(&access)?));
        Ok(Self {
            rules: config.rules.iter().map(Rule::from_config).collect(),
            access,
            emails,
        })
    }

    /// Re-reads `allowed_emails_file` whenever its modification time changes,
    /// looking every [`EMAILS_FILE_CHECK`]. The request path only ever loads
    /// the current snapshot.
    pub fn watch_emails_file(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.watch_emails_file_every(EMAILS_FILE_CHECK)
    }

    fn watch_emails_file_every(&self, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let path: PathBuf = self.access.allowed_emails_file.clone()?;
        let access = self.access.clone();
        let emails = self.emails.clone();
        Some(tokio::spawn(async move {
            let mut seen = modified(&path);
            loop {
                tokio::time::sleep(interval).await;
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match read_emails(&access) {
                    Ok(set) => {
                        tracing::info!(file = %path.display(), count = set.len(), "reloaded access.allowed_emails_file");
                        emails.store(Arc::new(set));
                    }
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = %e, "cannot re-read access.allowed_emails_file; keeping the previous list")
                    }
                }
            }
        }))
    }

    /// The requirement of the first rule matching `method` and the normalised `path`;
    /// no match means "signed in".
    pub fn requirement(&self, method: &Method, path: &str) -> Requirement<'_> {
        let rule = self.rules.iter().find(|r| {
            (r.methods.is_empty() || r.methods.contains(method)) && r.pattern.matches(path)
        });
        match rule {
            Some(r) if r.public => Requirement::Public,
            Some(r) => Requirement::SignedIn {
                groups: &r.groups,
                api: r.api,
            },
            None => Requirement::SignedIn {
                groups: &[],
                api: false,
            },
        }
    }

    /// The global policy: verified email, allowed emails or domains, allowed groups.
    pub fn admits(&self, identity: &Identity) -> Result<(), Denied> {
        let a = &self.access;
        if let Some(email) = &identity.email {
            if a.require_email_verified && identity.email_verified != Some(true) {
                return Err(Denied::EmailNotVerified);
            }
            // Lower-cased only when it has capitals: most emails arrive lower-case.
            let email = if email.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(email.to_ascii_lowercase())
            } else {
                Cow::Borrowed(email.as_str())
            };
            let listed = self.emails.load().contains(email.as_ref());
            if !listed && !domain_allowed(&a.allowed_email_domains, &email) {
                return Err(Denied::EmailNotAllowed);
            }
        } else if !a.allowed_email_domains.iter().any(|d| d == "*") {
            // Without an email only a policy that admits every domain can pass.
            return Err(Denied::EmailNotAllowed);
        }
        if !a.allowed_groups.is_empty() && !in_any(&identity.groups, &a.allowed_groups) {
            return Err(Denied::NotInAllowedGroup);
        }
        Ok(())
    }

    /// The global policy, then the rule's groups.
    pub fn authorize(
        &self,
        identity: &Identity,
        requirement: Requirement<'_>,
    ) -> Result<(), Denied> {
        self.admits(identity)?;
        match requirement {
            Requirement::SignedIn { groups, .. }
                if !groups.is_empty() && !in_any(&identity.groups, groups) =>
            {
                Err(Denied::NotInRuleGroup)
            }
            _ => Ok(()),
        }
    }
}

fn in_any(have: &[String], wanted: &[String]) -> bool {
    have.iter().any(|g| wanted.contains(g))
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read_emails(access: &AccessConfig) -> std::io::Result<HashSet<String>> {
    let mut set: HashSet<String> = access.allowed_emails.iter().cloned().collect();
    if let Some(path) = &access.allowed_emails_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "access.allowed_emails_file: cannot read {}: {e}",
                    path.display()
                ),
            )
        })?;
        set.extend(
            text.lines()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_ascii_lowercase),
        );
    }
    Ok(set)
}

/// Domain allow-list on label boundaries (DESIGN §8.2, §8.7): the address must have
/// exactly one `@`; `example.com` admits that domain only, `.example.com` admits
/// its subdomains only, `*` admits all.
pub fn domain_allowed(allowed: &[String], email: &str) -> bool {
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if local.is_empty() || domain.is_empty() {
        return false;
    }
    allowed.iter().any(|entry| {
        if entry == "*" {
            true
        } else if entry.starts_with('.') {
            domain.len() > entry.len() && domain.ends_with(entry.as_str())
        } else {
            domain == entry
        }
    })
}

// === paths ===

/// [`normalize`]'s path alone, dot segments resolved (tests).
#[cfg(test)]
pub fn normalize_path(raw: &str) -> Cow<'_, str> {
    normalize(raw).0
}

/// The path rules are matched against (see [`normalize`]), or `None` when
/// the path has `.` or `..` segments (also percent-encoded). Clients
/// resolve those before sending, and an upstream that does not remove them
/// as the rules did would serve another path than the rules judged:
/// `/admin/../public/x` would pass a public `/public/` rule and reach `/admin`.
pub fn unambiguous_path(raw: &str) -> Option<Cow<'_, str>> {
    match normalize(raw) {
        (path, false) => Some(path),
        (_, true) => None,
    }
}

/// The path rules are matched against (DESIGN §8.5): percent-decoded once,
/// `//` collapsed, `;` path parameters cut off, dot segments removed (RFC 3986
/// §5.2.4); and whether it had dot segments. The request target never carries
/// a fragment, so a decoded `%23` is an ordinary character here.
fn normalize(raw: &str) -> (Cow<'_, str>, bool) {
    if is_normal(raw) {
        (Cow::Borrowed(raw), false)
    } else {
        let (path, dot_segments) = resolve(raw);
        (Cow::Owned(path), dot_segments)
    }
}

/// [`normalize`] the long way: decoded, split into segments and joined again.
fn resolve(raw: &str) -> (String, bool) {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    let mut dot_segments = false;
    for (i, seg) in segments.iter().enumerate() {
        // Path parameters (`/admin;jsessionid=x/`) are cut off: Java servlet
        // containers route without them, so `/admin;x/panel` is `/admin/panel`
        // to them, and `/..;/` is `/../`.
        match seg.split(';').next().unwrap_or_default() {
            "" => trailing_slash = i == last && i > 0,
            "." => {
                dot_segments = true;
                trailing_slash = i == last && i > 0;
            }
            ".." => {
                dot_segments = true;
                out.pop();
                trailing_slash = i == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(decoded.len() + 1);
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if trailing_slash || path.is_empty() {
        path.push('/');
    }
    (path, dot_segments)
}

/// Whether [`normalize`] would leave `raw` as it is, as it does nearly every
/// path a browser sends: absolute, nothing percent-encoded, no `;`, and no
/// empty, `.` or `..` segment (but a trailing `/`). Checked without allocating.
fn is_normal(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let segments = rest.strip_suffix('/').unwrap_or(rest);
    !raw.contains(['%', ';']) && segments.split('/').all(|s| !matches!(s, "" | "." | ".."))
}

impl Rule {
    fn from_config(c: &RuleConfig) -> Self {
        Self {
            pattern: Pattern::parse(&c.path),
            methods: c
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            public: c.public,
            groups: c.groups.clone(),
            api: c.api,
        }
    }
}

impl Pattern {
    fn parse(p: &str) -> Self {
        if p.contains('*') {
            Pattern::Glob {
                parts: glob_parts(p),
                bare: p
                    .strip_suffix("/**")
                    .filter(|bare| !bare.is_empty())
                    .map(glob_parts),
            }
        } else if p.ends_with('/') {
            Pattern::Prefix(p.to_owned())
        } else {
            Pattern::Exact(p.to_owned())
        }
    }

    /// A prefix (`/admin/`) and a glob ending in `/**` cover the path without
    /// its trailing slash too: most upstreams serve `/admin` and `/admin/` alike.
    fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Exact(p) => path == p,
            Pattern::Prefix(p) => {
                path.starts_with(p.as_str()) || (p.len() > 1 && path == &p[..p.len() - 1])
            }
            Pattern::Glob { parts, bare } => {
                glob_match(parts, path) || bare.as_ref().is_some_and(|b| glob_match(b, path))
            }
        }
    }
}

fn glob_parts(p: &str) -> Vec<GlobPart> {
    let mut parts = Vec::new();
    let mut rest = p;
    while let Some(i) = rest.find('*') {
        if i > 0 {
            parts.push(GlobPart::Literal(rest[..i].to_owned()));
        }
        if rest[i..].starts_with("**") {
            parts.push(GlobPart::DoubleStar);
            rest = &rest[i + 2..];
        } else {
            parts.push(GlobPart::Star);
            rest = &rest[i + 1..];
        }
    }
    if !rest.is_empty() {
        parts.push(GlobPart::Literal(rest.to_owned()));
    }
    parts
}

/// Anchored at both ends. One pass over the path per part, keeping the set of
/// positions the parts so far can end at: a backtracking search would take
/// time exponential in the number of `**`, and rules are matched before the
/// request is authenticated.
fn glob_match(parts: &[GlobPart], path: &str) -> bool {
    // Most globs start with a literal (`/admin/**`): a path without it is
    // refused before anything is allocated.
    if let Some(GlobPart::Literal(first)) = parts.first()
        && !path.starts_with(first.as_str())
    {
        return false;
    }
    let bytes = path.as_bytes();
    let mut reach = vec![false; bytes.len() + 1];
    let mut next = vec![false; bytes.len() + 1];
    reach[0] = true;
    for part in parts {
        next.fill(false);
        match part {
            GlobPart::Literal(lit) => {
                for i in (0..=bytes.len()).filter(|&i| reach[i]) {
                    if bytes[i..].starts_with(lit.as_bytes()) {
                        next[i + lit.len()] = true;
                    }
                }
            }
            // From a reachable position onwards, within its segment (`*`) or
            // without limit (`**`); always ending on a character boundary.
            GlobPart::Star | GlobPart::DoubleStar => {
                let crosses_slashes = *part == GlobPart::DoubleStar;
                let mut active = false;
                for j in 0..=bytes.len() {
                    active = reach[j] || (active && (crosses_slashes || bytes[j - 1] != b'/'));
                    next[j] = active && path.is_char_boundary(j);
                }
            }
        }
        std::mem::swap(&mut reach, &mut next);
    }
    reach[bytes.len()]
}

#[cfg(test)]
mod tests;
