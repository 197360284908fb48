//! Who is calling the `api` function. API Gateway has authenticated the
//! caller (a JWT authorizer or IAM) before the function runs; this layer
//! reads who it was from the request context and hands the router a
//! [`Caller`], whom the ownership rules of [`crate::domain::identity`] then
//! apply to, as they do to a `flotilla serve` token's user.
//!
//! - JWT: the first of the configured claims that is set (default `email`,
//!   then `sub`) names the caller; they are an admin when named in the admin
//!   list or when their `cognito:groups` (or `groups`) claim holds the admin
//!   group.
//! - IAM: the caller's principal ARN names them (not a session name, which a
//!   caller who may assume a role could choose); they are an admin when the
//!   ARN is in the admin list.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use lambda_http::request::RequestContext;

use crate::domain::identity::Caller;

/// How a caller is named and who is an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRule {
    /// JWT claims that may name the caller, the first set wins.
    pub claims: Vec<String>,
    /// Callers (claim values or principal ARNs) who are admins.
    pub admins: Vec<String>,
    /// The JWT group whose members are admins.
    pub admin_group: Option<String>,
}

impl Default for IdentityRule {
    fn default() -> Self {
        Self {
            claims: vec!["email".to_owned(), "sub".to_owned()],
            admins: Vec::new(),
            admin_group: None,
        }
    }
}

/// The members of a groups claim as API Gateway passes it: `[a b]`, or a
/// comma-separated list, or one name.
fn groups(value: &str) -> Vec<&str> {
    value
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|g| g.trim_matches('"'))
        .filter(|g| !g.is_empty())
        .collect()
}

impl IdentityRule {
    /// The caller a request context names, or `None` when it names nobody
    /// (a request that did not come through an authorizer).
    pub fn caller(&self, context: &RequestContext) -> Option<Caller> {
        #[allow(irrefutable_let_patterns)]
        let RequestContext::ApiGatewayV2(context) = context else {
            return None;
        };
        let authorizer = context.authorizer.as_ref()?;
        if let Some(jwt) = &authorizer.jwt {
            let name = self
                .claims
                .iter()
                .find_map(|claim| jwt.claims.get(claim).filter(|v| !v.trim().is_empty()))?
                .trim()
                .to_owned();
            let in_group = self.admin_group.as_deref().is_some_and(|group| {
                ["cognito:groups", "groups"]
                    .iter()
                    .filter_map(|claim| jwt.claims.get(*claim))
                    .any(|value| groups(value).contains(&group))
            });
            let admin = in_group || self.admins.contains(&name);
            return Some(Caller::User { name, admin });
        }
        let arn = authorizer.iam.as_ref()?.user_arn.clone()?;
        let admin = self.admins.contains(&arn);
        Some(Caller::User { name: arn, admin })
    }
}

/// The layer: puts the request context's caller in the request's extensions
/// (where [`crate::http::access::Who`] finds it).
pub async fn identify(
    State(rule): State<Arc<IdentityRule>>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = request
        .extensions()
        .get::<RequestContext>()
        .and_then(|context| rule.caller(context));
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groups_claim_is_read_in_each_form_api_gateway_passes_it() {
        assert_eq!(groups("[admins data]"), vec!["admins", "data"]);
        assert_eq!(groups("admins,data"), vec!["admins", "data"]);
        assert_eq!(groups("admins"), vec!["admins"]);
        assert!(groups("[]").is_empty());
    }
}
