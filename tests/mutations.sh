#!/usr/bin/env bash
# The mutation check of MUTATIONS.md: each security check is broken the way a
# real bug would break it (one line, one at a time), and the unit tests and the
# tests over real sockets named for it must then fail. Not part of `cargo test`
# (each mutation rebuilds the crate): run it after changing a defence.
#
#   tests/mutations.sh            # every mutation
#   tests/mutations.sh azp idle   # only these
#
# Each mutation is a sed expression checked to change its file (a pattern that
# no longer matches stops the run: update it with the code). The file is
# restored after each run, and on any exit or interruption. Exits non-zero
# when a mutation is missed, does not apply or does not compile.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
only=("$@")
log_dir=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-mutations.XXXXXX")
backup="$log_dir/original"
mutated_file=""
restore() {
  if [[ -n $mutated_file ]]; then
    cp "$backup" "$mutated_file"
    mutated_file=""
  fi
}
trap restore EXIT
trap 'restore; exit 130' INT TERM

results=()
failed=0

# mutation NAME FILE SED_EXPRESSION UNIT_TESTS SOCKET_TESTS
# The tests are full test paths (`--exact`), space-separated: unit tests of the
# library (`cargo test --lib`) and tests of tests/it over real sockets.
mutation() {
  local name=$1 file=$2 expr=$3 unit=$4 sockets=$5
  if ((${#only[@]})) && [[ " ${only[*]} " != *" $name "* ]]; then
    return
  fi
  cp "$file" "$backup"
  mutated_file=$file
  sed -e "$expr" "$backup" >"$file"
  if cmp -s "$backup" "$file"; then
    restore
    echo "!! $name: the pattern no longer matches $file; update the script" >&2
    results+=("| $name | $file | - | - | DOES NOT APPLY |")
    failed=1
    return
  fi
  echo "== $name ($file)"
  local out="$log_dir/$name.log"
  local names=($unit $sockets)
  if ! cargo test --lib --test it --no-run >"$out" 2>&1; then
    restore
    echo "!! $name does not compile (see $out)" >&2
    results+=("| $name | $file | - | - | DOES NOT COMPILE |")
    failed=1
    return
  fi
  cargo test --lib --test it --no-fail-fast -- --exact "${names[@]}" >>"$out" 2>&1 || true
  restore
  count() {
    local n=0 total=0 t
    for t in $1; do
      total=$((total + 1))
      if grep -qx "test $t \.\.\. FAILED" "$out"; then
        n=$((n + 1))
      elif ! grep -qx "test $t \.\.\. ok" "$out"; then
        echo "!! $name: no test $t ran (renamed?)" >&2
        failed=1
      fi
    done
    echo "$n/$total"
  }
  local unit_failed sockets_failed verdict
  unit_failed=$(count "$unit")
  sockets_failed=$(count "$sockets")
  if [[ ${unit_failed%/*} == "${unit_failed#*/}" && ${sockets_failed%/*} == "${sockets_failed#*/}" ]]; then
    verdict=caught
  else
    verdict=MISSED
    failed=1
  fi
  echo "   unit $unit_failed, over sockets $sockets_failed: $verdict"
  results+=("| $name | $file | $unit_failed | $sockets_failed | $verdict |")
}

# === the mutations: MUTATIONS.md says what each stands for ===

mutation spoof-underscore src/headers.rs \
  "s/^    if b == b'_' {\$/    if false {/" \
  "headers::tests::spoofed_identity_headers_are_stripped_in_every_spelling headers::tests::spoof_guard_protects_by_normalised_name" \
  "spoofing::spoofed_identity_headers_are_replaced_for_signed_in_users spoofing::spoofed_identity_headers_are_stripped_on_public_paths_and_options"

mutation hop-by-hop src/headers.rs \
  "s/^        if !(keep_upgrade && name.eq_ignore_ascii_case(UPGRADE.as_str())) {\$/        if false {/" \
  "headers::tests::hop_by_hop_headers_and_connection_listed_names_are_removed" \
  "proxying::hop_by_hop_headers_are_removed_both_ways"

mutation header-encoding src/identity.rs \
  's/^        && !value.contains("=?");$/;/' \
  "identity::tests::a_value_holding_an_encoded_word_anywhere_is_encoded" \
  "login_flow::non_ascii_and_control_characters_in_claims_reach_the_upstream_encoded"

mutation own-cookies src/session/cookies.rs \
  's/^        if !own && !several {$/        if !several {/' \
  "session::cookies::tests::strip_keeps_other_cookies_byte_for_byte" \
  "proxying::the_upstream_gets_the_apps_cookies_and_none_of_portcullis login_flow::browser_signs_in_upstream_sees_identity_then_signs_out"

mutation forward-auth-trust src/auth/forward_auth.rs \
  's/let trusted = is_trusted(conn.peer_ip.ip(), &app.config.server.trusted_proxies);/let trusted = true;/' \
  "auth::tests::forward_auth_believes_the_original_request_only_from_a_trusted_proxy" \
  "forward_auth::untrusted_original_uri_and_method_are_ignored spoofing::forward_auth_ignores_x_forwarded_uri_from_untrusted_peers forward_auth::untrusted_forwarded_headers_never_make_a_redirect_nor_its_rd"

mutation rd-still-encoded src/redirect.rs \
  's/^    percent_decode_str(&form).decode_utf8_lossy() == \*form$/    true/' \
  "redirect::tests::decoding_is_checked_for_three_rounds" \
  "redirects::rd_still_encoded_after_every_round_or_holding_a_backslash_is_refused"

mutation rd-backslash src/redirect.rs \
  "s/^        c == '\\\\\\\\'\$/        false/" \
  "redirect::tests::a_backslash_anywhere_is_refused" \
  "redirects::rd_still_encoded_after_every_round_or_holding_a_backslash_is_refused"

mutation rd-domain-label src/redirect.rs \
  "s/^                && host.as_bytes()\[host.len() - name.len() - 1\] == b'.');\$/);/" \
  "redirect::tests::allowed_redirect_domains_refuse_every_trick" \
  "open_redirects::allowed_redirect_domain_tricks_lead_to_no_other_host"

mutation rule-prefix-boundary src/policy.rs \
  's/path.starts_with(p.as_str()) || (p.len() > 1 && path == &p\[..p.len() - 1\])/path.starts_with(\&p[..p.len() - 1])/' \
  "policy::tests::a_prefix_or_slash_double_star_rule_covers_the_bare_path_too" \
  "rules::a_prefix_rule_covers_its_directory_and_bare_name_and_no_longer_name"

mutation rule-domain-label src/policy.rs \
  's/^                    .eq_ignore_ascii_case(entry.as_bytes())$/& || domain.ends_with(\&entry[1..])/' \
  "policy::tests::domain_lists_compare_on_label_boundaries" \
  "rules::emails_and_domains_rules_say_who_is_admitted"

mutation aead-associated-data src/session/keys.rs \
  's/aad: name.as_bytes(),/aad: b"",/' \
  "session::keys::tests::value_cannot_move_to_another_cookie_name session::flow::tests::a_flow_value_cannot_move_to_another_flow_name" \
  "sessions::a_session_sealed_for_another_cookie_name_does_not_open_under_this_one"

mutation expiry-boundary src/session.rs \
  's/if self.expires_at <= now {/if self.expires_at < now {/' \
  "session::cookies::tests::foreign_secret_expired_and_idle_sessions_are_refused" \
  "sessions::a_session_is_refused_from_the_second_it_expires"

mutation expiry-cached src/session/cookies.rs \
  's/^        if let Some(reason) = opened.session.unusable_at(now, idle) {$/        if let Some(reason) = opened.session.unusable_at(now, idle).filter(|_| cached.is_none()) {/' \
  "session::cookies::tests::foreign_secret_expired_and_idle_sessions_are_refused" \
  "sessions::a_session_served_from_the_opened_session_cache_still_expires"

mutation idle-timeout src/session.rs \
  's/now.saturating_sub(self.last_seen_at) > idle =>/now.saturating_sub(self.last_seen_at) > idle * 1000 =>/' \
  "session::cookies::tests::foreign_secret_expired_and_idle_sessions_are_refused" \
  "sessions::a_session_idle_for_longer_than_the_idle_timeout_is_refused"

mutation flow-replay src/session/flow.rs \
  's/^            return Err(FlowError::Replayed);$/            \/\/ a replay goes on/' \
  "session::flow::tests::a_flow_is_taken_once" \
  "sessions::replayed_callback_is_refused_even_with_the_flow_cookie"

mutation flow-provider src/auth/callback.rs \
  's/^    if flow.provider != provider.id() {$/    if false {/' \
  "auth::tests::a_flow_started_for_one_provider_never_completes_on_anothers_path" \
  "providers::several::a_callback_on_another_providers_path_never_completes_the_flow sessions::a_flow_started_for_one_provider_is_refused_on_another_providers_path"

mutation rfc9207-iss src/provider/oidc.rs \
  '/^        Some(iss) if iss != issuer => Err(ProviderError::IssuerMismatch),$/d' \
  "provider::tests::response_iss_must_name_the_provider_and_is_required_when_advertised" \
  "login_flow::callback_naming_another_issuer_is_refused_before_the_code_is_exchanged"

mutation id-token-azp src/provider/oidc.rs \
  's/Some(Value::String(azp)) if azp == client_id => Ok(()),/Some(Value::String(_)) => Ok(()),/' \
  "provider::tests::every_bad_id_token_is_refused_for_its_own_reason" \
  "id_token::a_token_for_another_client_naming_us_as_an_extra_audience_is_refused"

mutation id-token-nonce src/provider/oidc.rs \
  's/Some(nonce) => id_token.claims(&verifier, nonce)?,/Some(_) => id_token.claims(\&verifier, |_: Option<\&Nonce>| Ok(()))?,/' \
  "provider::tests::every_bad_id_token_is_refused_for_its_own_reason" \
  "id_token::missing_nonce_is_refused id_token::wrong_nonce_is_refused"

echo
echo "Mutation check, $(date -u '+%Y-%m-%d %H:%M UTC'), logs in $log_dir"
echo
echo "| mutation | file | unit tests failed | over sockets failed | verdict |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${results[@]}"
caught=$(printf '%s\n' "${results[@]}" | grep -c '| caught |' || true)
echo
echo "caught $caught/${#results[@]}"
exit $failed
