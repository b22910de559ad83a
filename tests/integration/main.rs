//! The one integration-test binary: each module is a family of tests.

mod admin_cli;
mod attacks;
mod browser_e2e;
mod browser_pages;
mod cli;
mod deploy;
mod dingtalk;
mod dingtalk_sim;
mod faults;
mod faults_keys;
mod harness;
mod idaas_sim;
mod interop;
mod oidc_flows;
mod openapi;
mod rate_limits;
mod replicas;
mod storage_conformance;
mod telemetry;
mod upstream_oidc;
