//! idbridge: an OpenID Connect provider that bridges DingTalk and IDaaS-style upstreams.
//!
//! Dependencies point one way: `main -> app -> http -> oidc -> {connectors, storage}`;
//! `config` and `clock` are leaves every layer may use.

pub mod admin;
pub mod app;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod http;
pub mod inspect;
pub mod kubesphere;
pub mod oidc;
pub mod storage;
pub mod telemetry;
