//! Keeping what a server sends from driving the terminal.
//!
//! Names, messages and reply lines come from the server, and a hostile one can put terminal
//! controls in them: C0 and C1 controls (U+009B is a one-character CSI, as good as ESC `[`), DEL,
//! and the Unicode bidi controls that make `txt.exe` look like `exe.txt`. Every such character
//! is shown escaped, in text (`\u{9b}`) and in JSON (`\u009b`, which decodes to the same
//! string, so the JSON still carries the real name).

/// Whether `c` must never reach a terminal as it is.
fn dangerous(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(
            c,
            '\u{061C}' // ARABIC LETTER MARK
            | '\u{200E}' | '\u{200F}' // LEFT-TO-RIGHT and RIGHT-TO-LEFT MARK
            | '\u{202A}'..='\u{202E}' // embeddings and overrides
            | '\u{2066}'..='\u{2069}' // isolates
        )
}

/// `s` for a text line: dangerous characters as `\u{…}`.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if dangerous(c) {
            out += &format!("\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A line of JSON text (no line break in it) with every dangerous character as a JSON
/// `\uXXXX` escape. Outside strings JSON holds none of them, so the value is unchanged.
pub(crate) fn json(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if dangerous(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out += &format!("\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Standard output for JSON lines from the network (a `sft call` line stream), each escaped
/// with [`json`] as it is written. Lines are at most a header line long (PROTOCOL.md §3.2),
/// so at most one is held.
#[derive(Debug)]
pub(crate) struct JsonLines<W> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: std::io::Write> JsonLines<W> {
    pub(crate) fn new(inner: W) -> Self {
        JsonLines {
            inner,
            pending: Vec::new(),
        }
    }

    fn write_lines(&mut self, all: bool) -> std::io::Result<()> {
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            self.inner.write_all(json(&text).as_bytes())?;
            self.inner.write_all(b"\n")?;
        }
        if all && !self.pending.is_empty() {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            self.inner.write_all(json(&text).as_bytes())?;
        }
        Ok(())
    }
}

impl<W: std::io::Write + Unpin> futures::AsyncWrite for JsonLines<W> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.pending.extend_from_slice(buf);
        std::task::Poll::Ready(this.write_lines(false).map(|()| buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::Poll::Ready(this.write_lines(true).and_then(|()| this.inner.flush()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped() {
        let name = "a\u{9b}31m\u{7f}b\u{202e}txt.exe\u{2066}\u{1b}";
        assert_eq!(
            escape(name),
            "a\\u{9b}31m\\u{7f}b\\u{202e}txt.exe\\u{2066}\\u{1b}"
        );
        let line = serde_json::json!({ "name": name }).to_string();
        let shown = json(&line);
        assert!(shown.chars().all(|c| !dangerous(c)), "{shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back["name"], name);
        assert_eq!(escape("plain ü 日本"), "plain ü 日本");
    }
}
