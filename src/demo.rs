//! `portcullis demo`: an identity provider, an upstream app and the proxy, wired
//! together on loopback in one process. The identity provider is also the test
//! suite's: it signs real tokens and can be told to misbehave.

pub mod idp;
pub mod upstream;
