use http::{HeaderMap, StatusCode};

use super::*;

const INJECTION: &str = "<script>alert('x')</script>\"&";

#[test]
fn escape_covers_the_five_html_specials() {
    assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#x27;f");
    assert_eq!(escape("plain ünïcode"), "plain ünïcode");
    assert_eq!(escape(""), "");
}

#[test]
fn security_headers_are_strict() {
    let mut h = HeaderMap::new();
    security_headers(&mut h);
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{csp} lacks {directive}");
    }
    assert!(!csp.contains("script-src"));
}

#[test]
fn sign_in_links_every_provider_with_the_encoded_rd() {
    let page = sign_in(
        &[
            button("google", "Google", None),
            button("corp", "Corp SSO", None),
        ],
        "/app?x=1&y=a b#frag",
        None,
    );
    assert!(
        page.contains(r#"href="/oauth2/start/google?rd=%2Fapp%3Fx%3D1%26y%3Da%20b%23frag""#),
        "{page}"
    );
    assert!(
        page.contains(r#"href="/oauth2/start/corp?rd=%2Fapp%3Fx%3D1%26y%3Da%20b%23frag""#),
        "{page}"
    );
    assert!(page.contains("Sign in with Google"));
    assert!(page.contains("Sign in with Corp SSO"));
    assert!(!page.contains("{{"), "unfilled placeholder in {page}");
    assert!(page.starts_with("<!doctype html>"));
}

#[test]
fn sign_in_escapes_names_ids_and_rd() {
    let page = sign_in(&[button("a\"b", INJECTION, None)], INJECTION, None);
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains("Sign in with &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;")
    );
    assert!(page.contains("/oauth2/start/a%22b?rd=%3Cscript%3E"));
}

fn button<'a>(id: &'a str, display_name: &'a str, icon: Option<&'a str>) -> SignInButton<'a> {
    SignInButton {
        id,
        display_name,
        icon,
    }
}

#[test]
fn sign_in_shows_escaped_icons() {
    let page = sign_in(
        &[button(
            "g",
            "Google",
            Some("https://x.example/g.svg?a=1&b=\"2"),
        )],
        "/",
        None,
    );
    assert!(
        page.contains(r#"<img src="https://x.example/g.svg?a=1&amp;b=&quot;2" alt="""#),
        "{page}"
    );
}

#[test]
fn operator_template_replaces_the_body_and_keeps_the_layout() {
    let template = "<h1>ACME staff</h1><p>back to {{rd}}</p><ul>{{providers}}</ul>";
    let page = sign_in(&[button("corp", "Corp", None)], "/x?<y>", Some(template));
    assert!(
        page.starts_with("<!doctype html>"),
        "the layout (and its CSS) stays"
    );
    assert!(
        page.contains("<h1>ACME staff</h1><p>back to /x?&lt;y&gt;</p>"),
        "{page}"
    );
    assert!(
        page.contains(r#"href="/oauth2/start/corp?rd=%2Fx%3F%3Cy%3E""#),
        "{page}"
    );
    assert!(!page.contains("Choose how to sign in"));
}

#[test]
fn error_page_escapes_title_and_detail() {
    let page = error(StatusCode::FORBIDDEN, INJECTION, INJECTION);
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("<title>&lt;script&gt;"));
    assert!(page.contains("<h1>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;</h1>"));
    assert!(page.contains("403 Forbidden"));
}

#[test]
fn signed_out_page_offers_to_sign_in_again() {
    let page = signed_out();
    assert!(page.contains("Signed out"));
    assert!(page.contains(r#"href="/oauth2/sign_in""#));
    assert!(!page.contains("{{"));
}

#[test]
fn sign_out_confirmation_posts_to_sign_out_with_rd_encoded() {
    let page = confirm_sign_out(Some(INJECTION));
    assert!(
        page.contains(r#"<form method="post" action="/oauth2/sign_out?rd=%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E%22%26">"#),
        "{page}"
    );
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains(r#"<button class="button" type="submit">"#));
    let page = confirm_sign_out(None);
    assert!(page.contains(r#"action="/oauth2/sign_out">"#), "{page}");
    assert!(!page.contains("{{"));
}

#[test]
fn render_inserts_values_once_without_rescanning_them() {
    assert_eq!(
        render("a {{x}} b {{y}}", &[("x", "{{y}}"), ("y", "2")]),
        "a {{y}} b 2"
    );
    assert_eq!(render("{{unknown}} {{x}}", &[("x", "1")]), "{{unknown}} 1");
    assert_eq!(render("{{x", &[("x", "1")]), "{{x");
    assert_eq!(render("{{{{x}}}}", &[("x", "1")]), "{{1}}");
}
