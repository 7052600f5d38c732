//! Properties of header value encoding (issue #10 item 9): whatever a provider
//! puts in a claim, the upstream gets a valid header value that decodes, under
//! RFC 2047, to exactly the claim: never raw control characters, never a value
//! that an HTTP parser trims or an RFC 2047 decoder reads as something else.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use serde_json::Value;

use super::*;

/// What an HTTP/1.1 recipient reads: the field value without the optional
/// whitespace around it (RFC 9110 §5.5, RFC 9112 §5.1).
fn received(value: &http::HeaderValue) -> &[u8] {
    let bytes = value.as_bytes();
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// One RFC 2047 encoded word at the start of `s`: `=?charset?B|Q?text?=`, its
/// decoded bytes and its length, when it is one (charset UTF-8 or US-ASCII).
fn encoded_word(s: &str) -> Option<(Vec<u8>, usize)> {
    let rest = s.strip_prefix("=?")?;
    let (charset, rest) = rest.split_once('?')?;
    let (encoding, rest) = rest.split_once('?')?;
    let end = rest.find("?=")?;
    let text = &rest[..end];
    if text.contains([' ', '\t']) {
        return None;
    }
    // RFC 2231 §5: a language may follow the charset after `*`.
    let bare = charset.split('*').next().unwrap_or("");
    if !bare.eq_ignore_ascii_case("utf-8") && !bare.eq_ignore_ascii_case("us-ascii") {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => STANDARD.decode(text).ok()?,
        "Q" | "q" => q_decode(text)?,
        _ => return None,
    };
    Some((bytes, 2 + charset.len() + 1 + encoding.len() + 1 + end + 2))
}

fn q_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b => out.push(b),
        }
    }
    Some(out)
}

/// A lenient RFC 2047 decoder, as mail libraries and web frameworks have them:
/// an encoded word is decoded wherever it starts, and whitespace between two
/// encoded words is dropped (RFC 2047 §6.2). Lenient on purpose: a value
/// portcullis sends raw must not decode to anything else under any decoder.
fn rfc2047_decode(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?;
    let mut out: Vec<u8> = Vec::new();
    let mut rest = value;
    let mut after_word = false;
    while !rest.is_empty() {
        if let Some((bytes, len)) = encoded_word(rest) {
            out.extend_from_slice(&bytes);
            rest = &rest[len..];
            after_word = true;
            continue;
        }
        if after_word {
            let ws = rest.len() - rest.trim_start_matches([' ', '\t']).len();
            if ws > 0 && encoded_word(&rest[ws..]).is_some() {
                rest = &rest[ws..];
                continue;
            }
        }
        after_word = false;
        let c = rest.chars().next().expect("not empty");
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        rest = &rest[c.len_utf8()..];
    }
    String::from_utf8(out).ok()
}

/// Claims an attacker (or an odd provider) may send: any text, and text built
/// from whitespace, control characters, non-ASCII and pieces of encoded words.
fn claim() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        " ",
        "  ",
        "\t",
        "\r",
        "\n",
        "\r\n",
        "\u{0}",
        "\u{7f}",
        "=?",
        "?=",
        "=",
        "?",
        "=?UTF-8?B?YWRtaW4=?=",
        "=?utf-8?q?admin?=",
        "=?UTF-8?B?",
        "?B?",
        "_",
        "Ada",
        "Zoë",
        "admin",
        "a@example.com",
        ",",
        ";",
        "\"",
        "é",
        "日本",
        "\u{fffd}",
        "\u{200b}",
    ];
    prop_oneof![
        any::<String>(),
        "\\PC{0,12}",
        proptest::collection::vec(proptest::sample::select(PIECES), 0..8)
            .prop_map(|pieces| pieces.concat()),
    ]
}

/// The property: a valid, portable header value (visible ASCII, spaces and
/// tabs only inside) that decodes to the claim; printable ASCII that no
/// decoder could misread passes unchanged.
fn encodes_to_a_value_that_decodes_to_the_claim(claim: &str) -> Result<(), TestCaseError> {
    let value = encode_header_value(claim)
        .ok_or_else(|| TestCaseError::fail(format!("{claim:?} was dropped")))?;
    let bytes = value.as_bytes();
    prop_assert!(
        bytes
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) || b == b'\t'),
        "{:?} -> {:?} is not visible ASCII",
        claim,
        value
    );
    prop_assert_eq!(
        received(&value),
        bytes,
        "{:?} -> {:?} is trimmed by an HTTP parser",
        claim,
        value
    );
    let decoded = rfc2047_decode(received(&value));
    prop_assert_eq!(
        decoded.as_deref(),
        Some(claim),
        "{:?} -> {:?} decodes to something else",
        claim,
        value
    );
    let plain = claim
        .bytes()
        .all(|b| (0x21..0x7f).contains(&b) || b == b' ')
        && !claim.contains("=?")
        && claim.trim_matches(' ') == claim;
    if plain {
        prop_assert_eq!(bytes, claim.as_bytes(), "plain ASCII is sent as it is");
    }
    Ok(())
}

/// The same through an [`Identity`]: every claim `[headers]` may name.
fn identity_headers_decode_to_claims(
    sub: String,
    name: String,
    groups: Vec<String>,
    extra: String,
) -> Result<(), TestCaseError> {
    prop_assume!(!sub.is_empty());
    let identity = Identity {
        sub: sub.clone(),
        email: None,
        email_verified: Some(true),
        name: Some(name.clone()),
        preferred_username: None,
        groups: groups.clone(),
        extra: BTreeMap::from([("department".to_owned(), Value::String(extra.clone()))]),
        added: Default::default(),
    };
    for (claim, expected) in [
        ("sub", Some(sub)),
        ("name", Some(name)),
        ("groups", (!groups.is_empty()).then(|| groups.join(","))),
        ("department", Some(extra)),
        ("email", None),
    ] {
        let value = identity.header_value(claim);
        match expected {
            None => prop_assert!(value.is_none()),
            Some(expected) => {
                let value = value.ok_or_else(|| TestCaseError::fail("claim dropped"))?;
                prop_assert_eq!(rfc2047_decode(received(&value)), Some(expected));
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn header_values_decode_to_the_claim(claim in claim()) {
        encodes_to_a_value_that_decodes_to_the_claim(&claim)?;
    }

    #[test]
    fn identity_headers_decode_to_the_claims(
        sub in claim(),
        name in claim(),
        groups in proptest::collection::vec(claim(), 0..3),
        extra in claim(),
    ) {
        identity_headers_decode_to_claims(sub, name, groups, extra)?;
    }
}

#[test]
fn the_decoder_reads_encoded_words_as_rfc_2047_says() {
    let d = |s: &str| rfc2047_decode(s.as_bytes());
    assert_eq!(d("=?UTF-8?B?Wm/Dqw==?=").as_deref(), Some("Zoë"));
    assert_eq!(d("=?utf-8?q?Zo=C3=AB_x?=").as_deref(), Some("Zoë x"));
    assert_eq!(
        d("a =?UTF-8?B?YQ==?= =?UTF-8?B?Yg==?= c").as_deref(),
        Some("a ab c")
    );
    assert_eq!(d("=?UTF-8?X?YQ==?=").as_deref(), Some("=?UTF-8?X?YQ==?="));
    assert_eq!(d("plain").as_deref(), Some("plain"));
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_header_value() {
    crate::fuzz::fuzz("header_value", claim(), |claim| {
        encodes_to_a_value_that_decodes_to_the_claim(&claim)
    });
}
