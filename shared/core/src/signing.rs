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

/// Why an approval page's form token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormTokenError {
    /// Not `issued.nonce.mac`, or a part is not what we write.
    Malformed,
    /// The MAC does not hold: another key, another approval, another link, or altered.
    Forged,
    /// Issued longer ago than the caller accepts.
    Expired,
    /// Issued in the future beyond the clock skew allowed between servers.
    NotYetValid,
}

/// Clock skew allowed between the process that rendered a page and the one that receives its
/// form (on AWS, two invocations that may run on different hosts).
pub const FORM_TOKEN_CLOCK_SKEW_SECONDS: i64 = 60;

/// A nonce is 32 lowercase hex digits (128 random bits); nothing else is accepted back, so the
/// signed message `decision-form:{id}:{exp}:{issued}:{nonce}` cannot be read two ways.
const FORM_NONCE_LEN: usize = 32;

fn form_token_mac(
    key: &[u8],
    approval_id: &str,
    link_expires_unix: i64,
    issued_unix: i64,
    nonce: &str,
) -> String {
    // Its own prefix: a form token can never be taken for a link signature, nor one for it.
    hmac_hex(
        key,
        format!("decision-form:{approval_id}:{link_expires_unix}:{issued_unix}:{nonce}").as_bytes(),
    )
}

/// The token an approval page puts in its form: `{issued_unix}.{nonce}.{mac}`. It binds the
/// form to one approval and one link (`link_expires_unix` is the link's `exp`) and to the
/// moment the page was rendered, so a form can only be posted by someone shown the page,
/// recently. The nonce makes each render's token different.
pub fn decision_form_token(
    key: &[u8],
    approval_id: &str,
    link_expires_unix: i64,
    issued_unix: i64,
    nonce: &str,
) -> String {
    let mac = form_token_mac(key, approval_id, link_expires_unix, issued_unix, nonce);
    format!("{issued_unix}.{nonce}.{mac}")
}

/// [`decision_form_token`] with a fresh random nonce.
pub fn new_decision_form_token(
    key: &[u8],
    approval_id: &str,
    link_expires_unix: i64,
    issued_unix: i64,
) -> String {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    decision_form_token(key, approval_id, link_expires_unix, issued_unix, &nonce)
}

/// Checks a form token for this approval and link, issued at most `max_age_seconds` before
/// `now_unix`. The MAC is compared in constant time, and before the age, so a forger learns
/// nothing about which part was wrong from the answer.
pub fn verify_decision_form_token(
    key: &[u8],
    approval_id: &str,
    link_expires_unix: i64,
    token: &str,
    now_unix: i64,
    max_age_seconds: i64,
) -> Result<(), FormTokenError> {
    let mut parts = token.trim().splitn(3, '.');
    let (Some(issued), Some(nonce), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(FormTokenError::Malformed);
    };
    let issued_ok =
        !issued.is_empty() && issued.len() <= 19 && issued.bytes().all(|b| b.is_ascii_digit());
    let nonce_ok = nonce.len() == FORM_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let Some(issued_unix) = issued.parse::<i64>().ok().filter(|_| issued_ok && nonce_ok) else {
        return Err(FormTokenError::Malformed);
    };
    let expected = form_token_mac(key, approval_id, link_expires_unix, issued_unix, nonce);
    if !secure_eq(&expected, mac) {
        return Err(FormTokenError::Forged);
    }
    if issued_unix > now_unix.saturating_add(FORM_TOKEN_CLOCK_SKEW_SECONDS) {
        return Err(FormTokenError::NotYetValid);
    }
    if now_unix.saturating_sub(issued_unix) > max_age_seconds {
        return Err(FormTokenError::Expired);
    }
    Ok(())
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

    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_form_token_holds_only_for_its_approval_link_and_age() {
        let key = b"k";
        let t = decision_form_token(key, "apr-1", 500, 100, NONCE);
        let check = |key: &[u8], id: &str, exp: i64, token: &str, now: i64| {
            verify_decision_form_token(key, id, exp, token, now, 60)
        };
        assert_eq!(check(key, "apr-1", 500, &t, 100), Ok(()));
        assert_eq!(check(key, "apr-1", 500, &t, 160), Ok(()), "exactly max age");
        assert_eq!(
            check(key, "apr-1", 500, &t, 161),
            Err(FormTokenError::Expired)
        );
        assert_eq!(
            check(key, "apr-2", 500, &t, 100),
            Err(FormTokenError::Forged)
        );
        assert_eq!(
            check(key, "apr-1", 501, &t, 100),
            Err(FormTokenError::Forged)
        );
        assert_eq!(
            check(b"other", "apr-1", 500, &t, 100),
            Err(FormTokenError::Forged)
        );
        assert_eq!(
            check(
                key,
                "apr-1",
                500,
                &t,
                100 - FORM_TOKEN_CLOCK_SKEW_SECONDS - 1
            ),
            Err(FormTokenError::NotYetValid)
        );
        // Moving the issue time forward breaks the MAC: a token cannot be refreshed.
        let moved = t.replacen("100.", "150.", 1);
        assert_eq!(
            check(key, "apr-1", 500, &moved, 200),
            Err(FormTokenError::Forged)
        );
        for bad in [
            "",
            "100",
            "100.abc",
            "x.y.z",
            &format!("-1.{NONCE}.00"),
            &format!("100.{}.00", NONCE.to_uppercase()),
        ] {
            assert_eq!(
                check(key, "apr-1", 500, bad, 100),
                Err(FormTokenError::Malformed),
                "{bad}"
            );
        }
        // An approval link's signature is never a form token's MAC.
        let link_sig = approval_signature(key, "apr-1", 500);
        let posing = format!("100.{NONCE}.{link_sig}");
        assert_eq!(
            check(key, "apr-1", 500, &posing, 100),
            Err(FormTokenError::Forged)
        );
    }

    #[test]
    fn each_render_gets_its_own_token() {
        let a = new_decision_form_token(b"k", "apr-1", 500, 100);
        let b = new_decision_form_token(b"k", "apr-1", 500, 100);
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert_eq!(
                verify_decision_form_token(b"k", "apr-1", 500, t, 100, 60),
                Ok(())
            );
        }
    }
}
