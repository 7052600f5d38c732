//! `portcullis demo`: an identity provider, an upstream app and the proxy, wired
//! together on loopback in one process. The identity provider is also the test
//! suite's: it signs real tokens and can be told to misbehave.

pub mod idp;
pub mod upstream;

use std::net::SocketAddr;

use crate::config::{self, ConfigError};
use crate::{App, StartError, shutdown_signal};

/// `portcullis demo`: the demo identity provider and app on free loopback ports,
/// the proxy on `listen`, with a fresh session secret.
pub async fn run(listen: SocketAddr) -> Result<(), StartError> {
    let idp = idp::DemoIdp::start(idp::IdpOptions::default())
        .await
        .map_err(StartError::Demo)?;
    let (app_addr, _app) = upstream::start().await.map_err(StartError::Demo)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let public_url = format!(
        "http://{}",
        listener.local_addr().map_err(StartError::Demo)?
    );
    let config = demo_config(&public_url, &idp, app_addr)
        .map_err(|e| StartError::Demo(std::io::Error::other(e.to_string())))?;
    let app = App::new(config)?;
    app.providers
        .wait_ready(std::time::Duration::from_secs(10))
        .await;
    let users: Vec<String> = idp::demo_users()
        .iter()
        .map(|u| format!("{} <{}>", u.preferred_username, u.email))
        .collect();
    println!(
        "\nportcullis demo is running.\n\n  Open {public_url}/ in a browser and sign in as one of: {}.\n\n  \
         identity provider: {}\n  demo app (behind the proxy): http://{app_addr}\n\nPress Ctrl-C to stop.\n",
        users.join(", "),
        idp.issuer(),
    );
    app.serve(listener, shutdown_signal()).await
}

fn demo_config(
    public_url: &str,
    idp: &idp::DemoIdp,
    app: SocketAddr,
) -> Result<config::Config, ConfigError> {
    let opts = idp::IdpOptions::default();
    let toml = format!(
        r#"
[server]
listen = "{listen}"
public_url = "{public_url}"
[upstream]
url = "http://{app}"
[session]
secret = "{secret}"
[[rules]]
path = "/healthz"
public = true
[providers.demo]
display_name = "Demo identity provider"
issuer = "{issuer}"
client_id = {client_id:?}
client_secret = {client_secret:?}
"#,
        listen = public_url.trim_start_matches("http://"),
        secret = config::generate_secret(),
        issuer = idp.issuer().as_str().trim_end_matches('/'),
        client_id = opts.client_id,
        client_secret = opts.client_secret.unwrap_or_default(),
    );
    config::from_figment(figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::string(&toml),
    ))
}
