//! Path normalization on arbitrary UTF-8: never panics, and what it accepts is clean — no empty,
//! `.` or `..` component, never absolute, within the length limits — and normalizes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sft_protocol::limits::{MAX_NAME_LEN, MAX_PATH_LEN};
use sft_protocol::{normalize, PathError};

/// Whether `normalize` refuses `s` as absolute: a leading `/`, a drive letter, a UNC prefix.
fn looks_absolute(s: &str) -> bool {
    let b = s.as_bytes();
    s.starts_with('/')
        || s.starts_with("\\\\")
        || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
}

fuzz_target!(|path: &str| {
    let rp = match normalize(path) {
        Ok(rp) => rp,
        Err(PathError::TooLong) => {
            assert!(path.len() > MAX_PATH_LEN || path.split('/').any(|c| c.len() > MAX_NAME_LEN));
            return;
        }
        Err(PathError::Nul) => {
            assert!(path.contains('\0'));
            return;
        }
        Err(PathError::Absolute) => {
            assert!(looks_absolute(path));
            return;
        }
        Err(PathError::Escapes) => {
            assert!(path.split('/').any(|c| c == ".."));
            return;
        }
    };
    assert!(path.len() <= MAX_PATH_LEN && !path.contains('\0') && !looks_absolute(path));
    for c in rp.components() {
        assert!(!matches!(c, "" | "." | ".."), "component {c:?} in {path:?}");
        assert!(!c.contains('/') && !c.contains('\0') && c.len() <= MAX_NAME_LEN);
    }
    assert_eq!(rp.is_root(), rp.components().len() == 0);
    let shown = rp.to_string();
    assert!(!shown.starts_with('/'));
    // Every spelling of a path gets one answer (`./C:x` once slipped through; fixed).
    assert!(!looks_absolute(&shown), "{path:?} → {shown:?}");
    assert_eq!(normalize(&shown), Ok(rp.clone()), "{path:?} → {shown:?}");
});
