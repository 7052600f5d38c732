//! The sign-in flow cookie (DESIGN §4): what the callback needs to finish a
//! sign-in, sealed, named per flow, alive 10 minutes, taken once.

use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::cookies::{SessionCookies, cookie_pairs, set_cookie};

/// How long a sign-in may take, and how long a taken state is remembered.
pub(super) const FLOW_LIFETIME_SECS: u64 = 600;
/// Sign-ins one browser may have in progress. Each start adds a flow cookie
/// (about 300 bytes), so a page that starts sign-in in a loop would otherwise
/// push the `Cookie` header past `server.max_header_bytes` for ten minutes.
pub const MAX_FLOWS: usize = 5;

/// One sign-in in progress. `state`, `nonce` and `pkce_verifier` are secrets.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub provider: String,
    /// Where to go after signing in; already checked by [`crate::redirect::safe_rd`].
    pub rd: String,
    /// Unix seconds.
    pub created_at: u64,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("provider", &self.provider)
            .field("rd", &self.rd)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlowError {
    #[error("no sign-in in progress for this callback")]
    Missing,
    #[error("the sign-in flow cookie is damaged or was sealed with another secret")]
    Invalid,
    #[error("the sign-in took longer than 10 minutes")]
    Expired,
    #[error("this sign-in callback was already used")]
    Replayed,
    #[error("the callback's state does not match the sign-in in progress")]
    StateMismatch,
}

impl SessionCookies {
    /// `<cookie_name>_flow_<first 16 hex digits of SHA-256(state)>` (with
    /// `__Secure-` for a `__Host-` cookie_name): one per flow,
    /// so sign-ins in two tabs keep their own cookie.
    pub fn flow_cookie_name(&self, state: &str) -> String {
        let digest = Sha256::digest(state.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}_flow_{hex}", self.flow_name)
    }

    /// The Set-Cookie that starts a sign-in; send [`Self::make_room_for_flow`]'s with it.
    pub fn start_flow(&self, flow: &Flow) -> HeaderValue {
        let name = self.flow_cookie_name(&flow.state);
        // A Flow holds strings and a number: serialising cannot fail.
        let json = serde_json::to_vec(flow).expect("a Flow always serialises");
        let value = self.keys.seal(&name, &json);
        let max_age = format!("Max-Age={FLOW_LIFETIME_SECS}");
        self.flow_set_cookie(&name, &value, &max_age)
    }

    /// Set-Cookie values deleting the request's flow cookies but the newest
    /// [`MAX_FLOWS`]` - 1`, making room for one more. Age is the sealed creation
    /// time (a cookie that does not open is oldest), then the order sent, which
    /// browsers keep by creation for cookies of one path (RFC 6265 §5.4).
    pub fn make_room_for_flow(&self, headers: &HeaderMap) -> Vec<HeaderValue> {
        let keep = MAX_FLOWS - 1;
        let mut flows: Vec<(u64, &[u8])> = cookie_pairs(headers)
            .filter(|p| self.is_flow_name(p.name))
            .map(|p| {
                let created_at = self.open_flow(p.name, p.value).map_or(0, |f| f.created_at);
                (created_at, p.name)
            })
            .collect();
        let Some(surplus) = flows.len().checked_sub(keep) else {
            return Vec::new();
        };
        flows.sort_by_key(|&(created_at, _)| created_at);
        flows[..surplus]
            .iter()
            .filter_map(|(_, name)| std::str::from_utf8(name).ok())
            .map(|name| self.flow_set_cookie(name, "", super::cookies::DELETE))
            .collect()
    }

    /// The flow for the callback's `state`, taken at most once, and the Set-Cookie
    /// deleting its cookie whatever the outcome.
    pub fn take_flow(
        &self,
        headers: &HeaderMap,
        state: &str,
        now: u64,
    ) -> (Result<Flow, FlowError>, HeaderValue) {
        let name = self.flow_cookie_name(state);
        let deletion = self.flow_set_cookie(&name, "", super::cookies::DELETE);
        (self.read_flow(headers, &name, state, now), deletion)
    }

    /// Set-Cookie values deleting every flow cookie the request carried.
    pub fn clear_flows(&self, request_headers: &HeaderMap) -> Vec<HeaderValue> {
        let mut names: Vec<&[u8]> = cookie_pairs(request_headers)
            .map(|p| p.name)
            .filter(|name| self.is_flow_name(name))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| std::str::from_utf8(name).ok())
            .map(|name| self.flow_set_cookie(name, "", super::cookies::DELETE))
            .collect()
    }

    pub(super) fn is_flow_name(&self, name: &[u8]) -> bool {
        name.strip_prefix(self.flow_name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"_flow_"))
            .is_some_and(|hex| {
                hex.len() == 16 && hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
    }

    fn read_flow(
        &self,
        headers: &HeaderMap,
        name: &str,
        state: &str,
        now: u64,
    ) -> Result<Flow, FlowError> {
        let mut values = cookie_pairs(headers)
            .filter(|p| p.name == name.as_bytes())
            .map(|p| p.value)
            .peekable();
        if values.peek().is_none() {
            return Err(FlowError::Missing);
        }
        // A stale duplicate (another path or domain) must not hide the real one.
        let flow = values
            .find_map(|value| self.open_flow(name.as_bytes(), value))
            .ok_or(FlowError::Invalid)?;
        if !bool::from(flow.state.as_bytes().ct_eq(state.as_bytes())) {
            return Err(FlowError::StateMismatch);
        }
        if now.saturating_sub(flow.created_at) > FLOW_LIFETIME_SECS {
            return Err(FlowError::Expired);
        }
        let state_hash: [u8; 32] = Sha256::digest(state.as_bytes()).into();
        if !self
            .consumed_flows
            .entry(state_hash)
            .or_insert(())
            .is_fresh()
        {
            return Err(FlowError::Replayed);
        }
        Ok(flow)
    }

    fn open_flow(&self, name: &[u8], value: &[u8]) -> Option<Flow> {
        let plaintext = self
            .keys
            .open(std::str::from_utf8(name).ok()?, value)
            .ok()?;
        serde_json::from_slice(&plaintext).ok()
    }

    /// Flow cookies are host-only, live under `/oauth2/` and are always
    /// `SameSite=Lax`: they must come back on the provider's cross-site top-level
    /// redirect to the callback (RFC 6265bis §8.8.2), which `Strict` would block.
    fn flow_set_cookie(&self, name: &str, value: &str, max_age: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie =
            format!("{name}={value}; Path=/oauth2/; {max_age}; HttpOnly{secure}; SameSite=Lax");
        // The name is checked in config, the value is base64url: always a valid header.
        set_cookie(cookie).expect("flow cookies are valid header values")
    }
}

#[cfg(test)]
mod tests;
