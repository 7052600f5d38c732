//! portcullis' own HTML: small server-rendered pages from templates under
//! `src/pages/`, everything shown escaped, strict security headers (DESIGN §3).

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderValue, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

const LAYOUT: &str = include_str!("pages/layout.html");
const SIGN_IN: &str = include_str!("pages/sign_in.html");
const ERROR: &str = include_str!("pages/error.html");
const SIGNED_OUT: &str = include_str!("pages/signed_out.html");
const CONFIRM_SIGN_OUT: &str = include_str!("pages/confirm_sign_out.html");
const DENIED: &str = include_str!("pages/denied.html");

/// No scripts, no framing; the only styles are the inline ones in the layout and
/// the only images are provider icons (same site, https or data:). The one form,
/// the sign-out confirmation, posts to portcullis itself (`form-action 'self'`).
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Everything but RFC 3986 unreserved characters, for a query value or a path segment.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// The headers every page portcullis renders carries: never cached (pages may
/// show who is signed in), never framed (clickjacking), no MIME sniffing, and
/// no Referer leaking `rd` or codes to other sites.
pub fn security_headers(h: &mut HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// One provider on the sign-in page.
#[derive(Debug, Clone, Copy)]
pub struct SignInButton<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
    /// An image URL (https, data: or a same-site path) shown beside the name.
    pub icon: Option<&'a str>,
}

/// The sign-in page: one button per provider, each a link to
/// `/oauth2/start/{id}?rd={rd}`. `template` (the operator's `sign_in.template`)
/// replaces the page body; its placeholders are `{{providers}}` (the list items)
/// and `{{rd}}` (the escaped return path).
pub fn sign_in(providers: &[SignInButton<'_>], rd: &str, template: Option<&str>) -> String {
    let rd_query = utf8_percent_encode(rd, COMPONENT).to_string();
    let buttons: String = providers
        .iter()
        .map(|p| {
            let href = format!(
                "/oauth2/start/{}?rd={rd_query}",
                utf8_percent_encode(p.id, COMPONENT)
            );
            let icon = p
                .icon
                .map(|src| {
                    format!(
                        "<img src=\"{}\" alt=\"\" width=\"20\" height=\"20\"> ",
                        escape(src)
                    )
                })
                .unwrap_or_default();
            format!(
                "<li><a class=\"button\" href=\"{}\">{icon}Sign in with {}</a></li>\n",
                escape(&href),
                escape(p.display_name)
            )
        })
        .collect();
    let main = render(
        template.unwrap_or(SIGN_IN),
        &[("providers", buttons.trim_end()), ("rd", &escape(rd))],
    );
    page("Sign in", &main)
}

/// An error page: the status, a short title and a detail safe to show.
pub fn error(status: StatusCode, title: &str, detail: &str) -> String {
    let main = render(
        ERROR,
        &[
            ("status", &escape(&status.to_string())),
            ("title", &escape(title)),
            ("detail", &escape(detail)),
        ],
    );
    page(title, &main)
}

/// The 403 page for a signed-in user a rule does not admit: who they are
/// signed in as, and a button that signs them out (a POST from this page, so
/// sign-out's cross-site check passes) and comes back to `rd`, the path they
/// asked for, where they can sign in with another account.
pub fn denied(title: &str, detail: &str, who: &str, rd: &str) -> String {
    let action = format!("/oauth2/sign_out?rd={}", utf8_percent_encode(rd, COMPONENT));
    let main = render(
        DENIED,
        &[
            ("status", &escape(&StatusCode::FORBIDDEN.to_string())),
            ("title", &escape(title)),
            ("detail", &escape(detail)),
            ("who", &escape(who)),
            ("action", &escape(&action)),
        ],
    );
    page(title, &main)
}

pub fn signed_out() -> String {
    page("Signed out", SIGNED_OUT)
}

/// Asks before signing out, for a sign-out another site sent: a button that
/// POSTs to `/oauth2/sign_out`, with `rd` (already checked) when it was given.
pub fn confirm_sign_out(rd: Option<&str>) -> String {
    let action = match rd {
        Some(rd) => format!("/oauth2/sign_out?rd={}", utf8_percent_encode(rd, COMPONENT)),
        None => "/oauth2/sign_out".to_owned(),
    };
    page(
        "Sign out?",
        &render(CONFIRM_SIGN_OUT, &[("action", &escape(&action))]),
    )
}

/// `main` (already escaped markup) inside the shared layout.
pub(crate) fn page(title: &str, main: &str) -> String {
    render(
        LAYOUT,
        &[("title", &escape(title)), ("main", main.trim_end())],
    )
}

/// Replaces each `{{name}}` in `template` with its value, in one pass: a value
/// is inserted as given (escape it first) and never scanned for placeholders
/// itself. Unknown placeholders are left as they are.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out =
        String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let value = after.find("}}").and_then(|end| {
            values
                .iter()
                .find(|(name, _)| *name == &after[..end])
                .map(|(_, v)| (end, v))
        });
        match value {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;
