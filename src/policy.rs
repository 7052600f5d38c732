//! Access policy (DESIGN §6): the first `[[rules]]` entry matching method and the
//! normalised path, then the global `[access]` policy for signed-in users.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Method;
use smallvec::SmallVec;

use crate::config::watch::Watch;
use crate::config::{AccessConfig, Config, RuleConfig};
use crate::identity::{ClaimValue, Identity};
use crate::routes::{HostPattern, bare_host};
pub(crate) use readings::{PathOptions, Reading, read as readings_of};

mod readings;
pub use readings::{PathRefused, collapse_slashes};

/// How often `access.allowed_emails_file` is checked for changes.
const EMAILS_FILE_CHECK: Duration = Duration::from_secs(5);

/// What the rules ask of a request: the matched rule's, or, for a path that
/// upstreams may read in several ways, what the rule of every reading asks.
#[derive(Debug, Clone)]
pub enum Requirement<'a> {
    /// No session needed.
    Public,
    /// A CORS preflight that `skip_preflight` (or `[access]
    /// skip_auth_preflight`) lets through: no session needed, and none used,
    /// so no identity headers go upstream.
    Preflight,
    /// A signed-in user who passes the global policy and whom each matched
    /// rule that says who it admits admits.
    SignedIn { admits: Admits<'a>, api: bool },
}

/// The "who" conditions of the rules a request met: the user must meet each.
/// Inline for one, so a plain path never allocates.
#[derive(Debug, Clone, Default)]
pub struct Admits<'a>(SmallVec<[&'a Who; 1]>);

/// By what they ask, whatever rules they borrow from.
impl<'b> PartialEq<Requirement<'b>> for Requirement<'_> {
    fn eq(&self, other: &Requirement<'b>) -> bool {
        match (self, other) {
            (Requirement::Public, Requirement::Public)
            | (Requirement::Preflight, Requirement::Preflight) => true,
            (
                Requirement::SignedIn { admits, api },
                Requirement::SignedIn {
                    admits: theirs,
                    api: also,
                },
            ) => {
                api == also
                    && admits.0.len() == theirs.0.len()
                    && admits.0.iter().zip(&theirs.0).all(|(a, b)| a == b)
            }
            _ => false,
        }
    }
}

impl<'a> Admits<'a> {
    pub fn of(who: &'a Who) -> Self {
        let mut lists = SmallVec::new();
        if !who.is_empty() {
            lists.push(who);
        }
        Self(lists)
    }

    fn admit(&self, identity: &Identity) -> bool {
        self.0.iter().all(|who| who.admits(identity))
    }

    fn and(mut self, other: Self) -> Self {
        for who in other.0 {
            if !self.0.iter().any(|w| std::ptr::eq(*w, who)) {
                self.0.push(who);
            }
        }
        self
    }
}

/// Whom a rule admits: every condition it lists must hold (`groups` and
/// `domains` both set: a user of one of those domains in one of those
/// groups); within a condition, any listed value will do. Nothing listed:
/// every signed-in user the global policy admits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Who {
    groups: Vec<String>,
    /// Lower-cased.
    emails: Vec<String>,
    /// Lower-cased; `example.com` or `.example.com`.
    domains: Vec<String>,
    /// Claim path (as kept in the identity) and the values it may have.
    claims: Vec<(String, Vec<ClaimValue>)>,
}

impl Who {
    pub fn from_config(c: &RuleConfig) -> Self {
        let lower = |list: &[String]| list.iter().map(|v| v.trim().to_ascii_lowercase()).collect();
        Self {
            groups: c.groups.clone(),
            emails: lower(&c.emails),
            domains: lower(&c.domains),
            claims: c
                .claims
                .iter()
                .map(|(path, values)| {
                    (
                        path.clone(),
                        values.iter().map(|v| ClaimValue::new(v)).collect(),
                    )
                })
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.emails.is_empty()
            && self.domains.is_empty()
            && self.claims.is_empty()
    }

    /// Allocates nothing: emails and domains compare ignoring ASCII case,
    /// claims are read from the identity as the session keeps it. `emails`
    /// and `domains` match only an address the provider calls verified,
    /// whatever `require_email_verified` says: an unverified address is one
    /// anybody may type (Entra's "nOAuth").
    fn admits(&self, identity: &Identity) -> bool {
        let email = identity
            .email
            .as_deref()
            .filter(|_| identity.email_verified == Some(true));
        (self.groups.is_empty() || in_any(&identity.groups, &self.groups))
            && (self.emails.is_empty()
                || email.is_some_and(|e| self.emails.iter().any(|w| w.eq_ignore_ascii_case(e))))
            && (self.domains.is_empty() || email.is_some_and(|e| domain_allowed(&self.domains, e)))
            && self
                .claims
                .iter()
                .all(|(path, values)| identity.claim_matches(path, values))
    }
}

impl<'a> Requirement<'a> {
    /// Both requirements at once: public only when both are.
    fn and(self, other: Self) -> Self {
        match (self, other) {
            (Requirement::Public, r) | (r, Requirement::Public) => r,
            (Requirement::Preflight, r) | (r, Requirement::Preflight) => r,
            (
                Requirement::SignedIn { admits, api },
                Requirement::SignedIn {
                    admits: more,
                    api: also,
                },
            ) => Requirement::SignedIn {
                admits: admits.and(more),
                api: api || also,
            },
        }
    }

    fn signed_in() -> Self {
        Requirement::SignedIn {
            admits: Admits::default(),
            api: false,
        }
    }
}

/// A CORS preflight (Fetch standard, "CORS-preflight request"): `OPTIONS`
/// with both `Origin` and `Access-Control-Request-Method`. A plain `OPTIONS`
/// is not one.
pub fn is_preflight(method: &Method, headers: &http::HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(http::header::ORIGIN)
        && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
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
    #[error("your account is not among those allowed to use this page")]
    NotAdmittedByRule,
}

pub struct Policy {
    rules: Vec<Rule>,
    /// Some rule names a host: only then is a request's host read.
    reads_host: bool,
    paths: PathOptions,
    access: AccessConfig,
    /// `allowed_emails` plus the lines of `allowed_emails_file`, swapped whole on change.
    emails: Arc<ArcSwap<HashSet<String>>>,
}

struct Rule {
    pattern: Pattern,
    /// The pattern lower-cased, for case-folded readings of a path.
    folded: Pattern,
    methods: Vec<Method>,
    /// `None`: any host.
    host: Option<HostPattern>,
    public: bool,
    who: Who,
    api: bool,
    skip_preflight: bool,
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
        let rules: Vec<Rule> = config.rules.iter().map(Rule::from_config).collect();
        Ok(Self {
            reads_host: rules.iter().any(|r| r.host.is_some()),
            paths: PathOptions {
                case_sensitive: access.case_sensitive_paths,
                encoded_slashes: access.allow_encoded_slashes,
                fold_unchanged: config.rules.iter().any(|r| r.path.to_lowercase() != r.path),
            },
            rules,
            access,
            emails,
        })
    }

    /// The same global `[access]` policy (sharing its allowed-emails list,
    /// and the file watch that updates it) under other rules: a route's.
    pub fn with_rules(&self, rules: &[RuleConfig]) -> Self {
        let fold_unchanged = rules.iter().any(|r| r.path.to_lowercase() != r.path);
        let rules: Vec<Rule> = rules.iter().map(Rule::from_config).collect();
        Self {
            reads_host: rules.iter().any(|r| r.host.is_some()),
            rules,
            paths: PathOptions {
                fold_unchanged,
                ..self.paths
            },
            access: self.access.clone(),
            emails: self.emails.clone(),
        }
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
            let mut watch = Watch::new([path.clone()], interval);
            loop {
                watch.changed().await;
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

    /// [`Policy::judge_request`] for a request with no host, not a preflight.
    pub fn judge(&self, method: &Method, raw_path: &str) -> Result<Requirement<'_>, PathRefused> {
        self.judge_request(method, raw_path, None, false)
    }

    /// What the rules ask of a request for `raw_path` (the target's path, no
    /// query) to `host` (its `Host`, port and all; a rule with a `host`
    /// never matches a request without one), under every reading an upstream
    /// may take of the path; or why the path is refused (see `readings`).
    /// `preflight`: see [`is_preflight`].
    pub fn judge_request(
        &self,
        method: &Method,
        raw_path: &str,
        host: Option<&str>,
        preflight: bool,
    ) -> Result<Requirement<'_>, PathRefused> {
        let readings = readings::read(raw_path, self.paths)?;
        if preflight && self.access.skip_auth_preflight {
            return Ok(Requirement::Preflight);
        }
        let mut each = readings
            .iter()
            .map(|r| self.requirement(method, r, host, preflight));
        // There is always a reading; were there none, the strict default.
        let first = each.next().unwrap_or(Requirement::signed_in());
        Ok(each.fold(first, Requirement::and))
    }

    /// Whether [`Policy::judge_request`] needs the request's host: only when
    /// some rule names one.
    pub fn reads_host(&self) -> bool {
        self.reads_host
    }

    /// The requirement of the first rule matching `method`, `host` (as the
    /// request names it, port included) and the reading; no match means
    /// "signed in".
    fn requirement(
        &self,
        method: &Method,
        reading: &Reading<'_>,
        host: Option<&str>,
        preflight: bool,
    ) -> Requirement<'_> {
        let rule = self.rules.iter().find(|r| {
            let pattern = if reading.folded {
                &r.folded
            } else {
                &r.pattern
            };
            (r.methods.is_empty() || r.methods.contains(method))
                && r.host
                    .as_ref()
                    // Trimmed only here: most rules name no host.
                    .is_none_or(|pattern| host.is_some_and(|h| pattern.matches(bare_host(h))))
                && pattern.matches(&reading.path)
        });
        match rule {
            Some(r) if r.public => Requirement::Public,
            Some(r) if preflight && r.skip_preflight => Requirement::Preflight,
            Some(r) => Requirement::SignedIn {
                admits: Admits::of(&r.who),
                api: r.api,
            },
            None => Requirement::signed_in(),
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

    /// The global policy, then whom the rules admit.
    pub fn authorize(
        &self,
        identity: &Identity,
        requirement: &Requirement<'_>,
    ) -> Result<(), Denied> {
        self.admits(identity)?;
        match requirement {
            Requirement::SignedIn { admits, .. } if !admits.admit(identity) => {
                Err(Denied::NotAdmittedByRule)
            }
            _ => Ok(()),
        }
    }

    /// The claim paths the rules match, which an identity must keep.
    pub fn claim_paths(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .flat_map(|r| r.who.claims.iter().map(|(path, _)| path.as_str()))
    }
}

fn in_any(have: &[String], wanted: &[String]) -> bool {
    have.iter().any(|g| wanted.contains(g))
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
/// its subdomains only, `*` admits all. `allowed` is lower-case; the address's
/// domain is compared ignoring ASCII case.
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
            domain.len() > entry.len()
                && domain.as_bytes()[domain.len() - entry.len()..]
                    .eq_ignore_ascii_case(entry.as_bytes())
        } else {
            domain.eq_ignore_ascii_case(entry)
        }
    })
}

impl Rule {
    fn from_config(c: &RuleConfig) -> Self {
        Self {
            pattern: Pattern::parse(&c.path),
            folded: Pattern::parse(&c.path.to_lowercase()),
            methods: c
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            // Validated with the configuration; an invalid one matches nothing.
            host: c.host.as_deref().map(|h| {
                HostPattern::parse(h).unwrap_or(HostPattern::Exact("\u{0}invalid".into()))
            }),
            public: c.public,
            who: Who::from_config(c),
            api: c.api,
            skip_preflight: c.skip_preflight,
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
mod proptests;
#[cfg(test)]
mod tests;
