//! The OpenID Connect protocol: requests, grants, tokens, keys. No HTTP framework types here;
//! time is always a parameter.

pub mod audit;
pub mod authorize;
pub mod claims;
pub mod clients;
pub mod error;
pub mod keys;
pub mod params;
pub mod provider;
pub mod random;
pub mod subject;

pub use error::{ErrorCode, OAuthError};
pub use provider::Provider;
