//! Showing what a peer sent to a person, in a log or on a terminal.
//!
//! Names, messages and lines come from the other side, and a hostile peer can put terminal
//! controls in them: C0 and C1 controls (U+009B is a one-character CSI, as good as ESC `[`),
//! DEL, and the Unicode bidi controls that make `txt.exe` look like `exe.txt`. The server's log
//! and the client's output show every such character escaped: in text as `\u{9b}`, in JSON as
//! `\u009b` (which decodes to the same string, so the JSON still carries the real name).

use std::fmt::Write as _;

/// Whether `c` must never reach a terminal as it is: C0 controls, DEL, C1 controls
/// (U+0080–U+009F), and the bidi controls (embeddings and overrides U+202A–U+202E, isolates
/// U+2066–U+2069, marks U+200E, U+200F and U+061C).
pub fn dangerous(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}'
        )
}

/// Appends `s` with every [dangerous] character as `\u{…}`.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        if dangerous(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// `s` with every [dangerous] character as `\u{…}`, for a text line.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// A line of JSON text (no line break in it) with every [dangerous] character as a JSON
/// `\uXXXX` escape. Outside strings JSON holds none of them, so the value is unchanged.
pub fn escape_json(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if dangerous(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape("a\x1b[31mred\nb\u{9b}"),
            "a\\u{1b}[31mred\\u{a}b\\u{9b}"
        );
        assert_eq!(escape("plain ünï 日本"), "plain ünï 日本");
    }

    #[test]
    fn del_c1_and_bidi_controls_are_escaped() {
        assert_eq!(escape("a\x7fb"), "a\\u{7f}b");
        assert_eq!(escape("\u{80}\u{9b}31m\u{9f}"), "\\u{80}\\u{9b}31m\\u{9f}");
        // "txt.exe" shown as "exe.txt" by a right-to-left override.
        assert_eq!(escape("a\u{202e}txt.exe"), "a\\u{202e}txt.exe");
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{61c}',
        ] {
            assert_eq!(escape(&c.to_string()), format!("\\u{{{:x}}}", c as u32));
        }
        // Neighbours of the escaped ranges are shown as they are.
        for c in [
            '\u{a0}', '\u{2029}', '\u{202f}', '\u{2065}', '\u{206a}', '\u{200d}', 'é',
        ] {
            assert_eq!(escape(&c.to_string()), c.to_string());
        }
    }

    #[test]
    fn json_lines_keep_their_value() {
        let name = "a\u{9b}31m\u{7f}b\u{202e}txt.exe\u{2066}\u{1b}";
        let line = serde_json::json!({ "name": name }).to_string();
        let shown = escape_json(&line);
        assert!(shown.chars().all(|c| !dangerous(c)), "{shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back["name"], name);
    }
}
