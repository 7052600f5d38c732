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
use crate::identity::Identity;
pub(crate) use readings::{PathOptions, Reading, read as readings_of};

mod readings;
pub use readings::{PathRefused, collapse_slashes};

/// How often `access.allowed_emails_file` is checked for changes.
const EMAILS_FILE_CHECK: Duration = Duration::from_secs(5);

/// What the rules ask of a request: the matched rule's, or, for a path that
/// upstreams may read in several ways, what the rule of every reading asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement<'a> {
    /// No session needed.
    Public,
    /// A signed-in user who passes the global policy and is in one of the
    /// groups of each matched rule that lists groups.
    SignedIn { groups: Groups<'a>, api: bool },
}

/// The group lists of the rules a request met: the user must be in one
/// group of each. Inline for one list, so a plain path never allocates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups<'a>(SmallVec<[&'a [String]; 1]>);

impl<'a> Groups<'a> {
    pub fn of(groups: &'a [String]) -> Self {
        let mut lists = SmallVec::new();
        if !groups.is_empty() {
            lists.push(groups);
        }
        Self(lists)
    }

    fn admit(&self, have: &[String]) -> bool {
        self.0.iter().all(|wanted| in_any(have, wanted))
    }

    fn and(mut self, other: Self) -> Self {
        for list in other.0 {
            if !self.0.iter().any(|l| std::ptr::eq(*l, list)) {
                self.0.push(list);
            }
        }
        self
    }
}

impl<'a> Requirement<'a> {
    /// Both requirements at once: public only when both are.
    fn and(self, other: Self) -> Self {
        match (self, other) {
            (Requirement::Public, r) | (r, Requirement::Public) => r,
            (
                Requirement::SignedIn { groups, api },
                Requirement::SignedIn {
                    groups: more,
                    api: also,
                },
            ) => Requirement::SignedIn {
                groups: groups.and(more),
                api: api || also,
            },
        }
    }
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
        let rules: Vec<Rule> = config.rules.iter().map(Rule::from_config).collect();
        Ok(Self {
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
        Self {
            rules: rules.iter().map(Rule::from_config).collect(),
            paths: PathOptions {
                fold_unchanged: rules.iter().any(|r| r.path.to_lowercase() != r.path),
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

    /// What the rules ask of a request for `raw_path` (the target's path, no
    /// query), under every reading an upstream may take of it; or why the path
    /// is refused (see `readings`).
    pub fn judge(&self, method: &Method, raw_path: &str) -> Result<Requirement<'_>, PathRefused> {
        let readings = readings::read(raw_path, self.paths)?;
        let mut each = readings.iter().map(|r| self.requirement(method, r));
        // There is always a reading; were there none, the strict default.
        let first = each.next().unwrap_or(Requirement::SignedIn {
            groups: Groups::default(),
            api: false,
        });
        Ok(each.fold(first, Requirement::and))
    }

    /// The requirement of the first rule matching `method` and the reading;
    /// no match means "signed in".
    fn requirement(&self, method: &Method, reading: &Reading<'_>) -> Requirement<'_> {
        let rule = self.rules.iter().find(|r| {
            let pattern = if reading.folded {
                &r.folded
            } else {
                &r.pattern
            };
            (r.methods.is_empty() || r.methods.contains(method)) && pattern.matches(&reading.path)
        });
        match rule {
            Some(r) if r.public => Requirement::Public,
            Some(r) => Requirement::SignedIn {
                groups: Groups::of(&r.groups),
                api: r.api,
            },
            None => Requirement::SignedIn {
                groups: Groups::default(),
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

    /// The global policy, then the rules' groups.
    pub fn authorize(
        &self,
        identity: &Identity,
        requirement: &Requirement<'_>,
    ) -> Result<(), Denied> {
        self.admits(identity)?;
        match requirement {
            Requirement::SignedIn { groups, .. } if !groups.admit(&identity.groups) => {
                Err(Denied::NotInRuleGroup)
            }
            _ => Ok(()),
        }
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
mod proptests;
#[cfg(test)]
mod tests;
