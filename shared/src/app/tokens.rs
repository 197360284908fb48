//! Run tokens: the secret each attempt is given (as `FLOTILLA_RUN_TOKEN`) to
//! report its own status. A token is an HMAC-SHA256 of the run and attempt
//! under the server's key, so nothing is stored per run and a token of one
//! attempt is worth nothing for another attempt or another run.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::run::Run;

type HmacSha256 = Hmac<Sha256>;

/// Issues and checks run tokens under one key.
#[derive(Clone)]
pub struct RunTokens {
    keyed: HmacSha256,
}

impl std::fmt::Debug for RunTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunTokens(…)")
    }
}

impl RunTokens {
    /// Tokens under `key` (at least 32 random bytes).
    pub fn new(key: &[u8]) -> Result<Self, hmac::digest::InvalidLength> {
        Ok(Self {
            keyed: HmacSha256::new_from_slice(key)?,
        })
    }

    fn mac(&self, run_id: &str, attempt: u32) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(format!("flotilla-run:{run_id}:{attempt}").as_bytes());
        mac
    }

    /// The token of `run_id`'s attempt `attempt`.
    pub fn issue(&self, run_id: &str, attempt: u32) -> String {
        hex::encode(self.mac(run_id, attempt).finalize().into_bytes())
    }

    /// Whether `token` is the token of `run`'s current attempt (compared in
    /// constant time).
    pub fn verify(&self, run: &Run, token: &str) -> bool {
        let Ok(bytes) = hex::decode(token.trim()) else {
            return false;
        };
        self.mac(&run.spec.run_id, run.attempt)
            .verify_slice(&bytes)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::scenario::queued;

    #[test]
    fn a_token_is_good_for_its_own_run_and_attempt_only() {
        let tokens = RunTokens::new(&[7; 32]).unwrap();
        let mut run = crate::domain::run::replay([&queued()]).run.unwrap();
        let token = tokens.issue(&run.spec.run_id, 1);
        assert!(tokens.verify(&run, &token));
        assert!(!tokens.verify(&run, "00"), "a wrong token");
        assert!(!tokens.verify(&run, "not hex"));
        run.attempt = 2;
        assert!(
            !tokens.verify(&run, &token),
            "attempt 1's token is not attempt 2's"
        );
        let other = RunTokens::new(&[8; 32]).unwrap();
        assert!(!other.verify(
            &crate::domain::run::replay([&queued()]).run.unwrap(),
            &token
        ));
    }
}
