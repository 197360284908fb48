//! Who is asking, and what they may change. Everyone may read everything
//! (Flotilla's open culture); only a thing's owner, or an admin, may stop
//! it, update it or delete it. The rules are the same on every backend:
//! only how a caller is known differs (a bearer token locally, API Gateway's
//! authorizer on AWS).

use serde::{Deserialize, Serialize};

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Caller {
    /// No identity is configured (a server on loopback without tokens, its
    /// one user at the keyboard): every rule allows.
    Anyone,
    /// A known user.
    User {
        /// Their name, as runs record their owner.
        name: String,
        /// Whether they may act on everyone's runs and definitions.
        admin: bool,
    },
}

impl Caller {
    /// A known user who is not an admin.
    pub fn user(name: impl Into<String>) -> Self {
        Self::User {
            name: name.into(),
            admin: false,
        }
    }

    /// A known admin.
    pub fn admin(name: impl Into<String>) -> Self {
        Self::User {
            name: name.into(),
            admin: true,
        }
    }

    /// The caller's name, when known.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Anyone => None,
            Self::User { name, .. } => Some(name),
        }
    }

    /// Whether the caller may act for `owner` (an owner of `None` is a thing
    /// made before owners were recorded: anyone may).
    pub fn may_act_for(&self, owner: Option<&str>) -> bool {
        match (self, owner) {
            (Self::Anyone | Self::User { admin: true, .. }, _) | (_, None) => true,
            (Self::User { name, .. }, Some(owner)) => name == owner,
        }
    }

    /// Whether the caller may launch a run owned by `owner`.
    pub fn may_launch_as(&self, owner: &str) -> bool {
        self.may_act_for(Some(owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_admins_may_act_and_others_may_not() {
        let ana = Caller::user("ana");
        assert!(ana.may_act_for(Some("ana")));
        assert!(!ana.may_act_for(Some("bo")));
        assert!(ana.may_act_for(None), "a thing without a recorded owner");
        assert!(Caller::admin("root").may_act_for(Some("bo")));
        assert!(Caller::Anyone.may_act_for(Some("bo")));
        assert!(!ana.may_launch_as("bo"));
    }
}
