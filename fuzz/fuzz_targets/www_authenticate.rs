//! `WWW-Authenticate` values from arbitrary bytes: the challenge parser never panics, and a
//! Bearer challenge it returns always has a realm.
#![no_main]

use acr_oci::auth::{parse_challenge, Challenge};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(Challenge::Bearer { realm, .. }) = parse_challenge(s) {
        assert!(realm.len() <= 8192);
    }
});
