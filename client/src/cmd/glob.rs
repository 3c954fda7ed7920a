//! Remote patterns (`sft get host 'logs/*.txt' dir/`): matched here, against listings of the
//! server's folders, one path component at a time, as scp's remote globs are.
//!
//! `*` matches any run of characters and `?` any one, `[abc]`, `[a-z]` and `[!a-z]` (or
//! `[^a-z]`) one of (or none of) a set; `\` makes the next character literal. None of them
//! matches `/`, and a name's leading `.` is matched only by a literal `.` (as in a shell).

use super::local::remote_join;
use sft_client::{Client, Error, Kind, ListHash};

/// Whether `path` holds a pattern: a `*` or `?`, or a `[` closed by a `]` in the same
/// component (outside `\` escapes). A lone `[` is just a character of a name.
pub(crate) fn has_glob(path: &str) -> bool {
    let chars: Vec<char> = path.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '*' | '?' => return true,
            '[' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '/')
                    .map_or(chars.len(), |p| i + p);
                if class(&chars[i..end], 'x').is_some() {
                    return true;
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// `component` without its escapes: the literal name it stands for.
fn unescape(component: &str) -> String {
    let mut out = String::with_capacity(component.len());
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or('\\')
        } else {
            c
        });
    }
    out
}

/// Whether `name` (one path component) matches `pattern` (one component).
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') && !pattern.starts_with("\\.") {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point (the last `*`): linear in practice, and
    // never exponential whatever the pattern.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some(&c) => {
                if let Some((ok, len)) = one(&p[pi..], c, n[ni]) {
                    if ok {
                        pi += len;
                        ni += 1;
                        continue;
                    }
                }
            }
            None => {}
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether the pattern element at the start of `p` (first character `c`) matches `ch`, and how
/// many pattern characters it spans.
fn one(p: &[char], c: char, ch: char) -> Option<(bool, usize)> {
    match c {
        '?' => Some((true, 1)),
        '\\' => match p.get(1) {
            Some(&lit) => Some((lit == ch, 2)),
            None => Some((ch == '\\', 1)),
        },
        '[' => Some(class(p, ch).unwrap_or((ch == '[', 1))),
        c => Some((c == ch, 1)),
    }
}

/// A `[…]` set at the start of `p`: whether `ch` is in it, and its length; `None` when the
/// `[` opens no complete set (it is then a literal `[`).
fn class(p: &[char], ch: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let c = *p.get(i)?;
        if c == ']' && !first {
            return Some((found != negate, i + 1));
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            c
        };
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&c| c != ']') {
            let mut hi_at = i + 2;
            let mut hi = p[hi_at];
            if hi == '\\' {
                hi_at += 1;
                hi = *p.get(hi_at)?;
            }
            found |= lo <= ch && ch <= hi;
            i = hi_at + 1;
        } else {
            found |= lo == ch;
            i += 1;
        }
    }
}

/// The remote paths `pattern` matches, in listing order, folders and files alike (symlinks
/// too: what they are is for the download to say). Components before the last match only
/// folders.
pub(crate) async fn expand(client: &mut Client, pattern: &str) -> Result<Vec<String>, Error> {
    let parts: Vec<&str> = pattern
        .trim_end_matches('/')
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let mut found = vec![String::new()];
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if !has_glob(part) {
            let name = unescape(part);
            found.iter_mut().for_each(|f| *f = remote_join(f, &name));
            continue;
        }
        let mut next = Vec::new();
        for dir in &found {
            let mut listing = match client.list_with(dir, false, ListHash::None).await {
                Ok(listing) => listing,
                // A literal part that names no folder matches nothing.
                Err(Error::Remote(_)) if i > 0 => continue,
                Err(e) => return Err(e),
            };
            while let Some(entry) = listing.next().await? {
                if (last || entry.kind == Kind::Folder) && matches(part, &entry.name) {
                    next.push(remote_join(dir, &entry.name));
                }
            }
        }
        found = next;
        if found.is_empty() {
            break;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("*.txt", "a.txt"));
        assert!(!matches("*.txt", ".txt"));
        assert!(matches("*", "anything"));
        assert!(!matches("*", ".hidden"));
        assert!(matches(".*", ".hidden"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(matches("a*b*c", "abc"));
        assert!(!matches("a*b*c", "abcd"));
        assert!(matches("?.log", "1.log"));
        assert!(!matches("?.log", "12.log"));
        assert!(matches("**", "x"));
        assert!(matches("*a*a*a*a*a*b", &"a".repeat(30).replace("aa", "ab")));
        assert!(!matches("*a*a*a*a*a*a*a*a*b", &"a".repeat(60)));
        assert!(matches("ü*", "über"));
    }

    #[test]
    fn sets_and_escapes() {
        assert!(matches("[abc].txt", "b.txt"));
        assert!(!matches("[abc].txt", "d.txt"));
        assert!(matches("[a-c]x", "bx"));
        assert!(!matches("[!a-c]x", "bx"));
        assert!(matches("[^a-c]x", "dx"));
        assert!(matches("[]]", "]"));
        assert!(matches("[a-]", "-"));
        assert!(matches("[", "["));
        assert!(matches("a[", "a["));
        assert!(matches("\\*", "*"));
        assert!(!matches("\\*", "x"));
        assert!(matches("\\[x]", "[x]"));
    }

    #[test]
    fn which_paths_are_patterns() {
        assert!(has_glob("logs/*.txt"));
        assert!(has_glob("a?"));
        assert!(has_glob("[ab]"));
        assert!(!has_glob("plain/name.txt"));
        assert!(!has_glob("\\*literal"));
        assert!(!has_glob("evil\u{1b}[31mred.txt"));
        assert!(!has_glob("a[/b]"));
        assert_eq!(unescape("\\*x\\?"), "*x?");
    }
}
