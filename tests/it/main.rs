//! Integration tests over real sockets; one binary so the suite links once.

mod assertion;
mod bearer;
mod browser;
mod cli;
mod connections;
mod containers;
mod fakes;
mod forward_auth;
mod front_proxies;
mod grpc;
mod id_token;
mod login_flow;
mod login_hook;
mod logs;
mod metrics;
mod open_redirects;
mod path_confusion;
mod provider_logout;
mod providers;
mod proxying;
mod readiness;
mod redirects;
// Shared with the library's unit tests, which use other parts of it.
#[allow(dead_code)]
mod redis_server;
mod redis_store;
mod refresh;
mod reload;
mod routes;
mod rules;
mod sessions;
mod shutdown;
mod spoofing;
mod support;
mod websocket;
