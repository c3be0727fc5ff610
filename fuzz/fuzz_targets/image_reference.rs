//! Image references, target tags, repositories, tags and digests from arbitrary bytes: no
//! panic, and whatever parses prints back to the same value.
#![no_main]

use acr_core::reference::{Digest, ImageRef, Repository, Tag, TargetTag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = ImageRef::parse(s) {
        assert_eq!(ImageRef::parse(&r.to_string()), Ok(r));
    }
    if let Ok(d) = Digest::parse(s) {
        assert_eq!(Digest::parse(&d.to_string()), Ok(d));
    }
    let _ = TargetTag::parse(s, &Tag::latest());
    let _ = Repository::parse(s);
    let _ = Tag::parse(s);
});
