//! forward-auth's original-request headers as a property: a trusted front
//! proxy's headers are believed only when every one of them names the same
//! request, once; anything else is refused or, with none at all, not said.

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::*;

const NAMES: [&str; 4] = [
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-original-uri",
    "x-original-method",
];

/// Values that agree, nearly agree, differ in case, or are not methods.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "/a", "/a?x=1", "/a#f", "/b", "/A", "", "GET", "POST", "get", "G T", "/admin/x",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ]
}

/// Each of the four headers sent zero, one or two times.
fn headers() -> impl Strategy<Value = Vec<(usize, Vec<u8>)>> {
    prop::collection::vec((0..NAMES.len(), value()), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn only_one_consistent_original_request_is_believed(sent in headers()) {
        only_one_consistent_request(&sent)?;
    }
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_original_request_headers() {
    crate::fuzz::fuzz("original_request_headers", headers(), |sent| {
        only_one_consistent_request(&sent)
    });
}

fn only_one_consistent_request(sent: &[(usize, Vec<u8>)]) -> Result<(), TestCaseError> {
    let mut map = HeaderMap::new();
    for (name, value) in sent {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append(NAMES[*name], value);
        }
    }
    let values = |name: &str| -> Vec<&str> {
        map.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{fffd}"))
            .collect()
    };
    match original_target(&map) {
        Original::NotSaid => prop_assert!(NAMES.iter().all(|n| values(n).is_empty())),
        Original::Refused(_) => {}
        Original::Target {
            method,
            uri: said,
            path,
        } => {
            for (uri, method_header) in [(NAMES[0], NAMES[1]), (NAMES[2], NAMES[3])] {
                let (uris, methods) = (values(uri), values(method_header));
                // A family is named whole, once, or not at all.
                prop_assert!(uris.len() == methods.len() && uris.len() <= 1, "{map:?}");
                if let (Some(uri), Some(m)) = (uris.first(), methods.first()) {
                    prop_assert_eq!(*m, method.as_str());
                    prop_assert_eq!(*uri, said);
                    prop_assert_eq!(uri.split(['?', '#']).next().unwrap_or("/"), path);
                }
            }
        }
    }
    Ok(())
}
