//! How the web UI signs its user in, answered by `GET /api/ui-config` (a
//! public route: the UI reads it before it has any credential).
//!
//! - [`SignIn::Open`]: nothing to sign in to (`flotilla serve` on loopback).
//! - [`SignIn::Token`]: paste a bearer token (a `flotilla serve` token file's,
//!   or a JWT from the deployment's issuer when the stack names no UI client).
//! - [`SignIn::OAuth`]: the OAuth 2.0 authorization-code flow with PKCE at
//!   an issuer (a stack with `ApiAuth=JWT` and a UI client id, or a server
//!   behind a gateway that checks that issuer's tokens); the UI then sends
//!   the ID token it was given as its bearer token.
//! - [`SignIn::Iam`]: the API takes SigV4-signed requests only, which a
//!   browser cannot make: the UI says so.

use std::sync::Arc;

use axum::Extension;
use schemars::JsonSchema;
use serde::Serialize;

use crate::http::{ApiResult, ok};

/// Where and how the UI's user signs in at an OAuth 2.0 issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct OAuthSignIn {
    /// The issuer (its `/.well-known/openid-configuration` is read for any
    /// endpoint not given here).
    pub issuer: String,
    /// The UI's client id at the issuer (a public client: no secret).
    pub client_id: String,
    /// Scopes asked for, space-separated.
    pub scopes: String,
    /// The issuer's authorization endpoint, when not discovered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// The issuer's token endpoint, when not discovered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
}

/// Scopes asked for when none are configured: an ID token naming the user.
pub const DEFAULT_SCOPES: &str = "openid email";

/// How the UI signs its user in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SignIn {
    /// Nothing to sign in to.
    #[default]
    Open,
    /// A bearer token pasted by the user.
    Token,
    /// The authorization-code flow with PKCE at an issuer.
    OAuth(OAuthSignIn),
    /// SigV4 only: the UI cannot call this API.
    Iam,
}

/// The answer of `GET /api/ui-config`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UiConfig {
    /// `open`, `token`, `oauth` or `iam`.
    pub sign_in: &'static str,
    /// With `oauth`: the issuer and the UI's client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthSignIn>,
}

impl SignIn {
    /// What the UI is told.
    pub fn config(&self) -> UiConfig {
        let (sign_in, oauth) = match self {
            SignIn::Open => ("open", None),
            SignIn::Token => ("token", None),
            SignIn::OAuth(oauth) => ("oauth", Some(oauth.clone())),
            SignIn::Iam => ("iam", None),
        };
        UiConfig { sign_in, oauth }
    }
}

/// `GET /api/ui-config`: how the UI signs in here.
pub async fn ui_config(sign_in: Option<Extension<Arc<SignIn>>>) -> ApiResult {
    let sign_in = sign_in.map(|Extension(s)| s).unwrap_or_default();
    ok(sign_in.config())
}
