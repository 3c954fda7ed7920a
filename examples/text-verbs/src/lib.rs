//! An example sft command crate, built by following `EXTENDING.md`: two text verbs and a verb
//! that writes, one file each, and a [`registry`] that serves them beside the built-ins.
//!
//! - [`wc::Wc`] — `WC`: counts the lines, words and bytes of a file (reply fields, no body).
//! - [`head::Head`] — `HEAD`: sends the first lines of a file (a body of declared `size`).
//! - [`touch::Touch`] — `TOUCH`: creates an empty file or sets its times to now (it writes).
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(missing_debug_implementations)]

pub mod head;
pub mod touch;
pub mod wc;

// Every Rust snippet of the guide this crate follows compiles, as a doc test of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../../EXTENDING.md")]
struct ExtendingGuide;

/// The built-in verbs plus `WC`, `HEAD` and `TOUCH`.
pub fn registry() -> sft_commands::Registry {
    let mut registry = sft_commands::builtins();
    registry
        .register(wc::Wc)
        .register(head::Head)
        .register(touch::Touch);
    registry
}
