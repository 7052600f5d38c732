//! Properties of the sign-in flow cookies (issue #10 item 9, DESIGN §4): a
//! started flow is taken exactly once, whatever else the browser sends (other
//! flows, stale duplicates, other cookies, any order); no forged, moved or
//! mutated flow cookie, and no callback `state`, ever yields a flow that was
//! not sealed for that very state.

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::sample::Index;

use super::cookies::SessionCookies;
use super::flow::{Flow, FlowError};
use super::tests::session_config;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn cookies() -> SessionCookies {
    SessionCookies::new(&session_config(SECRET, &[]))
}

fn flow() -> impl Strategy<Value = Flow> {
    (
        "\\PC{1,24}",
        "\\PC{0,12}",
        "[A-Za-z0-9_-]{43}",
        "\\PC{1,8}",
        "/\\PC{0,24}",
        0u64..600,
    )
        .prop_map(|(state, nonce, pkce_verifier, provider, rd, age)| Flow {
            state,
            nonce,
            pkce_verifier,
            provider,
            rd,
            created_at: NOW - age,
        })
}

/// Several flows with distinct states (tabs signing in at once).
fn flows() -> impl Strategy<Value = Vec<Flow>> {
    proptest::collection::vec(flow(), 1..5).prop_map(|mut flows| {
        let mut seen = std::collections::HashSet::new();
        flows.retain(|f| seen.insert(f.state.clone()));
        flows
    })
}

fn pair_of(set_cookie: &HeaderValue) -> (String, String) {
    let first = set_cookie.to_str().unwrap().split(';').next().unwrap();
    let (name, value) = first.split_once('=').unwrap();
    (name.to_owned(), value.to_owned())
}

/// Pairs in a shuffled order, over one or two `Cookie` headers.
fn send(mut pairs: Vec<(String, String)>, order: &[Index], split: bool) -> HeaderMap {
    for (i, index) in order.iter().enumerate() {
        if pairs.len() > 1 {
            let a = i % pairs.len();
            let b = index.index(pairs.len());
            pairs.swap(a, b);
        }
    }
    let lines: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let mut map = HeaderMap::new();
    let mid = if split { lines.len() / 2 } else { lines.len() };
    for part in [&lines[..mid], &lines[mid..]] {
        if !part.is_empty() {
            map.append(COOKIE, HeaderValue::from_str(&part.join("; ")).unwrap());
        }
    }
    map
}

/// The property: each started flow is taken once, as it was, among the other
/// flows, stale junk duplicates of its own name and other cookies; a second
/// take is a replay.
fn a_started_flow_is_taken_once(
    flows: &[Flow],
    junk: &[String],
    order: &[Index],
    split: bool,
) -> Result<(), TestCaseError> {
    let c = cookies();
    let mut pairs: Vec<(String, String)> =
        flows.iter().map(|f| pair_of(&c.start_flow(f))).collect();
    for (k, value) in junk.iter().enumerate() {
        let target = &flows[k % flows.len()];
        pairs.push((c.flow_cookie_name(&target.state), value.clone()));
    }
    pairs.push(("theme".into(), "dark".into()));
    let headers = send(pairs, order, split);
    for f in flows {
        let (taken, deletion) = c.take_flow(&headers, &f.state, NOW);
        prop_assert_eq!(taken.as_ref(), Ok(f));
        let name = c.flow_cookie_name(&f.state);
        let deletion_sets = deletion.to_str().expect("ASCII").to_owned();
        let deletes_it = deletion_sets.starts_with(&format!("{name}=;"));
        prop_assert!(deletes_it, "{}", deletion_sets);
        prop_assert!(deletion_sets.contains("Max-Age=0"));
        let (again, _) = c.take_flow(&headers, &f.state, NOW);
        prop_assert_eq!(again, Err(FlowError::Replayed));
    }
    let cleared = c.clear_flows(&headers);
    prop_assert_eq!(cleared.len(), flows.len());
    Ok(())
}

/// One entry of a forged request to the callback.
#[derive(Debug, Clone)]
enum Forged {
    /// Flow `i`'s cookie as written.
    Real(Index),
    /// Flow `i`'s value under flow `j`'s name.
    Moved(Index, Index),
    /// Flow `i`'s value with one character changed, or cut short.
    Flipped(Index, Index),
    Truncated(Index, Index),
    /// Junk under flow `i`'s name.
    Junk(Index, String),
    /// A session cookie's value under flow `i`'s name.
    SessionValue(Index),
}

fn forged() -> impl Strategy<Value = Forged> {
    prop_oneof![
        2 => any::<Index>().prop_map(Forged::Real),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, j)| Forged::Moved(i, j)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, at)| Forged::Flipped(i, at)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(i, at)| Forged::Truncated(i, at)),
        1 => (any::<Index>(), "[A-Za-z0-9_-]{0,40}").prop_map(|(i, v)| Forged::Junk(i, v)),
        1 => any::<Index>().prop_map(Forged::SessionValue),
    ]
}

/// The property: whatever flow cookies arrive and whatever `state` the
/// callback names, a flow is returned only for the state it was sealed with,
/// only when its cookie arrived as written, and only once.
fn forged_flows_never_open(
    flows: &[Flow],
    forged: &[Forged],
    state: Option<String>,
    pick: Index,
    order: &[Index],
) -> Result<(), TestCaseError> {
    let c = cookies();
    let real: Vec<(String, String)> = flows.iter().map(|f| pair_of(&c.start_flow(f))).collect();
    let names: Vec<String> = flows.iter().map(|f| c.flow_cookie_name(&f.state)).collect();
    let session_value = c.keys.seal(&c.name, b"{}");
    let at = |i: &Index| i.index(flows.len());
    let mut pairs = Vec::new();
    for f in forged {
        pairs.push(match f {
            Forged::Real(i) => real[at(i)].clone(),
            Forged::Moved(i, j) => (names[at(j)].clone(), real[at(i)].1.clone()),
            Forged::Flipped(i, k) => {
                let mut value = real[at(i)].1.clone().into_bytes();
                let k = k.index(value.len());
                value[k] = if value[k] == b'A' { b'B' } else { b'A' };
                (
                    names[at(i)].clone(),
                    String::from_utf8(value).expect("ASCII"),
                )
            }
            Forged::Truncated(i, k) => {
                let value = &real[at(i)].1;
                (
                    names[at(i)].clone(),
                    value[..k.index(value.len())].to_owned(),
                )
            }
            Forged::Junk(i, v) => (names[at(i)].clone(), v.clone()),
            Forged::SessionValue(i) => (names[at(i)].clone(), session_value.clone()),
        });
    }
    let headers = send(pairs.clone(), order, false);
    let state = state.unwrap_or_else(|| flows[pick.index(flows.len())].state.clone());
    let (taken, _) = c.take_flow(&headers, &state, NOW);
    if let Ok(flow) = &taken {
        let sealed = flows.iter().position(|f| f.state == state);
        prop_assert!(
            sealed.is_some(),
            "a flow for a state never started: {:?}",
            state
        );
        let sealed = sealed.expect("checked");
        prop_assert_eq!(flow, &flows[sealed]);
        prop_assert!(
            pairs.contains(&real[sealed]),
            "a flow opened without its cookie as written"
        );
        let (again, _) = c.take_flow(&headers, &state, NOW);
        prop_assert_eq!(again, Err(FlowError::Replayed));
    }
    for deletion in c.clear_flows(&headers) {
        let name = pair_of(&deletion).0;
        prop_assert!(pairs.iter().any(|(n, _)| *n == name));
    }
    Ok(())
}

proptest! {
    #[test]
    fn a_started_flow_is_taken_exactly_once(
        flows in flows(),
        junk in proptest::collection::vec("[A-Za-z0-9_-]{0,40}", 0..3),
        order in proptest::collection::vec(any::<Index>(), 0..8),
        split in any::<bool>(),
    ) {
        a_started_flow_is_taken_once(&flows, &junk, &order, split)?;
    }

    #[test]
    fn forged_flow_cookies_never_open(
        flows in flows(),
        forged in proptest::collection::vec(forged(), 0..6),
        state in proptest::option::of("\\PC{0,12}"),
        pick in any::<Index>(),
        order in proptest::collection::vec(any::<Index>(), 0..8),
    ) {
        forged_flows_never_open(&flows, &forged, state, pick, &order)?;
    }
}

#[test]
#[ignore = "fuzz target: FUZZ_SECONDS=600 cargo test --lib fuzz_ -- --ignored"]
fn fuzz_flow_cookies() {
    crate::fuzz::fuzz(
        "flow_cookies",
        (
            flows(),
            proptest::collection::vec(forged(), 0..6),
            proptest::option::of("\\PC{0,12}"),
            any::<Index>(),
            proptest::collection::vec(any::<Index>(), 0..8),
        ),
        |(flows, forged, state, pick, order)| {
            forged_flows_never_open(&flows, &forged, state, pick, &order)
        },
    );
}
