//! What both benchmark binaries build their configuration from.

use portcullis::config::Config;

/// A valid configuration: the minimal one plus `extra` TOML (e.g. `[[rules]]`).
pub fn config(extra: &str) -> Config {
    let toml = format!(
        r#"
[server]
public_url = "https://app.example.com"
[upstream]
url = "http://127.0.0.1:8080"
[session]
secret = "bench-secret-0123456789abcdef-0123456789abcdef"
[providers.demo]
issuer = "https://idp.example.com"
client_id = "portcullis"
client_secret = "client-secret"
{extra}"#
    );
    portcullis::config::from_figment(figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::string(&toml),
    ))
    .unwrap_or_else(|e| panic!("bench config refused: {e}"))
}
