//! Admin-user credentials of emulated registries (ACR's `adminUserEnabled`, `listCredentials`).
//!
//! ACR gives every registry an admin user named after the registry with two passwords. Here
//! the passwords are derived, not stored: HMAC-SHA256 over the registry's lower-case name and
//! its *generation* (the instant it was created) under a key that belongs to the deployment
//! (the binary keeps it in the data directory). So nothing secret is written to the database,
//! every process with the key agrees on the passwords, and a registry deleted and created
//! again under the same name has new passwords: the old ones die with the old registry.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use base64::Engine;

type HmacSha256 = Hmac<Sha256>;

/// The names ACR gives the two admin passwords, in order.
pub const PASSWORD_NAMES: [&str; 2] = ["password", "password2"];

/// Length of the key (bytes).
pub const KEY_LEN: usize = 32;

/// The deployment's key for admin passwords.
#[derive(Clone)]
pub struct AdminKey([u8; KEY_LEN]);

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(<redacted>)")
    }
}

impl AdminKey {
    pub fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The admin user name of registry `name` (ACR: the registry's name as created).
    pub fn username(name: &str) -> String {
        name.to_owned()
    }

    /// The two admin passwords of registry `name` (case-insensitive, as registry names are)
    /// of generation `generation` (what tells apart registries that had the same name).
    pub fn passwords(&self, name: &str, generation: &str) -> [String; 2] {
        [
            self.password(name, generation, 0),
            self.password(name, generation, 1),
        ]
    }

    fn password(&self, name: &str, generation: &str, which: u8) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"acr-import admin password v2\0");
        mac.update(name.to_ascii_lowercase().as_bytes());
        mac.update(&[0]);
        mac.update(generation.as_bytes());
        mac.update(&[0, which]);
        let tag = mac.finalize().into_bytes();
        // 32 bytes → 43 base64url characters, the length class of ACR's admin passwords.
        let mut password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag);
        // Never a leading '-' (1 in 64 otherwise): `az acr import -p <password>` and other
        // argparse command lines would read it as an option (ACR's passwords never start so).
        if password.starts_with('-') {
            password.replace_range(..1, "x");
        }
        password
    }

    /// Whether `username` / `password` are registry `name`'s admin credentials. The user name
    /// compares case-insensitively (registry names do); the password in constant time.
    pub fn verify(&self, name: &str, generation: &str, username: &str, password: &str) -> bool {
        if !username.eq_ignore_ascii_case(name) {
            return false;
        }
        let mut ok = false;
        for expected in self.passwords(name, generation) {
            ok |= constant_time_eq(expected.as_bytes(), password.as_bytes());
        }
        ok
    }
}

/// Equality of two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_stable_distinct_and_verify() {
        let k = AdminKey::new([7; KEY_LEN]);
        let g = "2026-12-06T00:00:00.000000Z";
        let [p1, p2] = k.passwords("MyReg", g);
        assert_ne!(p1, p2);
        assert_eq!(p1.len(), 43);
        assert_eq!(k.passwords("myreg", g), [p1.clone(), p2.clone()]);
        assert!(k.verify("MyReg", g, "myreg", &p1));
        assert!(k.verify("myreg", g, "MyReg", &p2));
        assert!(!k.verify("MyReg", g, "other", &p1));
        assert!(!k.verify("MyReg", g, "MyReg", "wrong"));
        assert!(
            !k.verify("Other", g, "Other", &p1),
            "passwords are per registry"
        );
        assert!(
            !k.verify("MyReg", "2026-12-06T00:00:01.000000Z", "MyReg", &p1),
            "a registry created again under the name has other passwords"
        );
        let other_key = AdminKey::new([8; KEY_LEN]);
        assert!(
            !other_key.verify("MyReg", g, "MyReg", &p1),
            "passwords are per key"
        );
    }

    /// A password is handed to command lines (`az acr import -p`, `docker login -p`): it never
    /// starts with '-', which they would read as an option.
    #[test]
    fn no_password_starts_with_a_dash() {
        let k = AdminKey::new([3; KEY_LEN]);
        let mut dashed_before = 0;
        for i in 0..2000 {
            let g = format!("2026-12-06T00:00:{i:04}Z");
            for p in k.passwords("MyReg", &g) {
                assert!(!p.starts_with('-'), "{p}");
                assert_eq!(p.len(), 43);
                assert!(k.verify("MyReg", &g, "MyReg", &p));
                if p.starts_with('x') {
                    dashed_before += 1;
                }
            }
        }
        // About 1 in 64 started with '-' (now 'x') and 1 in 64 with 'x' anyway.
        assert!(dashed_before > 20, "{dashed_before}");
    }

    #[test]
    fn debug_redacts() {
        assert_eq!(
            format!("{:?}", AdminKey::new([1; KEY_LEN])),
            "AdminKey(<redacted>)"
        );
    }
}
