//! HMAC-SHA256 signatures: approval links, webhook bodies, Slack requests. Comparisons are
//! constant-time so a forger learns nothing from how fast a wrong signature is refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex HMAC-SHA256 of `message` under `key`.
pub fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time equality of two secrets or signatures.
pub fn secure_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// An approval link's signature covers the approval id and its expiry, so neither can be
/// altered and a link stops working when the approval window closes.
pub fn approval_signature(key: &[u8], approval_id: &str, expires_unix: i64) -> String {
    hmac_hex(
        key,
        format!("approval:{approval_id}:{expires_unix}").as_bytes(),
    )
}

pub fn approval_path(key: &[u8], approval_id: &str, expires_unix: i64) -> String {
    format!(
        "/approvals/{approval_id}?exp={expires_unix}&sig={}",
        approval_signature(key, approval_id, expires_unix)
    )
}

pub fn verify_approval(key: &[u8], approval_id: &str, expires_unix: i64, sig: &str) -> bool {
    secure_eq(&approval_signature(key, approval_id, expires_unix), sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        // HMAC-SHA256 test vector from RFC 4231, section 4.3.
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn approval_links_cannot_be_altered() {
        let key = b"k";
        let sig = approval_signature(key, "apr-1", 100);
        assert!(verify_approval(key, "apr-1", 100, &sig));
        assert!(!verify_approval(key, "apr-2", 100, &sig));
        assert!(!verify_approval(key, "apr-1", 101, &sig));
        assert!(!verify_approval(b"other", "apr-1", 100, &sig));
        assert!(!verify_approval(key, "apr-1", 100, ""));
    }
}
