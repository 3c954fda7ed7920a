//! The tokens file (`--tokens FILE`): what it says, and checking a presented token against it.
//!
//! One token a line, `NAME ACCESS SHA256HEX`: a name for log lines and replies, `read` or
//! `write`, and the lower-case hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
//! `#` starts a comment; blank lines are ignored. Only digests are kept in memory; a token is
//! hashed when presented and compared with every digest, each in constant time.

use sft_commands::auth::{Grant, Tokens};
use sft_protocol::auth::Access;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// One line of a tokens file.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    access: Access,
    digest: [u8; 32],
}

/// The tokens of one version of the file.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenList {
    entries: Vec<Entry>,
}

impl fmt::Debug for TokenList {
    // Names only: digests stay out of debug output too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (&e.name, e.access)))
            .finish()
    }
}

impl TokenList {
    /// Parses a tokens file's text. An error says which line is wrong and how, never what the
    /// line holds beyond its name (a token pasted where its hash belongs stays private).
    pub(crate) fn parse(text: &str) -> Result<TokenList, LineError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |what: String| LineError { line, what };
            let content = raw.split('#').next().unwrap_or("");
            let fields: Vec<&str> = content.split_whitespace().collect();
            let (name, access, hex) = match fields[..] {
                [] => continue,
                [name, access, hex] => (name, access, hex),
                [_, _, _, _, ..] => {
                    return Err(err(format!(
                        "{} fields; expected 3 (NAME ACCESS SHA256HEX): this server does not \
                         limit tokens to paths",
                        fields.len()
                    )))
                }
                _ => {
                    return Err(err(format!(
                        "{} field(s); expected 3: NAME ACCESS SHA256HEX",
                        fields.len()
                    )))
                }
            };
            let access = match access {
                "read" => Access::Read,
                "write" => Access::Write,
                _ => return Err(err(format!("access of {name:?} must be read or write"))),
            };
            let digest = parse_digest(hex).ok_or_else(|| {
                err(format!(
                    "the hash of {name:?} is not 64 hex digits: give the SHA-256 of the token, \
                     not the token (printf %s \"$TOKEN\" | sha256sum)"
                ))
            })?;
            if let Some(j) = entries.iter().position(|e| e.name == name) {
                return Err(err(format!(
                    "the name {name:?} is used twice (see line {})",
                    line_of(text, j)
                )));
            }
            if entries.iter().any(|e| e.digest == digest) {
                return Err(err(format!("the token of {name:?} is on another line too")));
            }
            entries.push(Entry {
                name: name.to_owned(),
                access,
                digest,
            });
        }
        Ok(TokenList { entries })
    }

    /// How many tokens it holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry whose digest is `digest`, compared with every entry in constant time.
    fn find(&self, digest: &[u8; 32]) -> Option<&Entry> {
        let mut found = None;
        for entry in &self.entries {
            // No early exit: every entry is compared, whichever matches.
            if same(&entry.digest, digest) {
                found = Some(entry);
            }
        }
        found
    }
}

/// The line number of the `n`-th token of `text` (for "used twice" errors).
fn line_of(text: &str, n: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.split('#').next().unwrap_or("").trim().is_empty())
        .nth(n)
        .map_or(0, |(i, _)| i + 1)
}

/// What is wrong with a line of a tokens file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineError {
    /// 1-based.
    pub(crate) line: usize,
    pub(crate) what: String,
}

/// 64 hex digits (either case) as 32 bytes.
fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Whether two digests are equal, in time that does not depend on where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// The SHA-256 of a token.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The tokens file a server was started with, and its tokens as last (successfully) loaded.
pub(crate) struct TokenStore {
    path: PathBuf,
    list: RwLock<Arc<TokenList>>,
    /// Bumped by each reload, so sessions know to check their grant again.
    generation: AtomicU64,
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .field("tokens", &self.current().len())
            .finish()
    }
}

/// Reads and parses a tokens file; errors name the file (and the line).
fn load(path: &Path) -> io::Result<TokenList> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read tokens file {}: {e}", path.display()),
        )
    })?;
    TokenList::parse(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "tokens file {}, line {}: {}",
                path.display(),
                e.line,
                e.what
            ),
        )
    })
}

impl TokenStore {
    /// Loads `path` (blocking: a small file, read once at start-up).
    pub(crate) fn open(path: &Path) -> io::Result<TokenStore> {
        let list = load(path)?;
        Ok(TokenStore {
            path: path.to_owned(),
            list: RwLock::new(Arc::new(list)),
            generation: AtomicU64::new(0),
        })
    }

    /// The file it reads.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens in force.
    pub(crate) fn current(&self) -> Arc<TokenList> {
        Arc::clone(&self.list.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads the file again (blocking). A file that cannot be read or parsed changes nothing:
    /// the tokens in force stay. Returns how many tokens are now in force.
    pub(crate) fn reload(&self) -> io::Result<usize> {
        let list = load(&self.path)?;
        let n = list.len();
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(n)
    }
}

impl Tokens for TokenStore {
    fn check(&self, token: &str) -> Option<Grant> {
        self.find(&digest(token))
    }

    /// Changes with every reload.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn recheck(&self, grant: &Grant) -> Option<Grant> {
        self.find(&grant.key)
    }
}

impl TokenStore {
    /// The grant of the token whose digest is `key`, among the tokens in force.
    fn find(&self, key: &[u8; 32]) -> Option<Grant> {
        self.current().find(key).map(|e| Grant {
            name: e.name.clone(),
            access: e.access,
            key: e.digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"; // "secret"

    #[test]
    fn the_digest_is_sha256() {
        let hex: String = digest("secret")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, ALICE);
    }

    #[test]
    fn lines_comments_and_blank_lines() {
        let text = format!(
            "# tokens\n\nalice read {ALICE}   # the reader\n  bob write {}\n",
            "ab".repeat(32)
        );
        let list = TokenList::parse(&text).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.find(&digest("secret")).unwrap().name, "alice");
        assert_eq!(list.find(&digest("secret")).unwrap().access, Access::Read);
        assert!(list.find(&digest("Secret")).is_none());
        assert_eq!(TokenList::parse("").unwrap().len(), 0);
    }

    #[test]
    fn malformed_lines_say_where_and_what() {
        let cases = [
            ("alice read\n", 1, "expected 3"),
            (
                &format!("\n# c\nalice admin {ALICE}\n") as &str,
                3,
                "read or write",
            ),
            ("alice read secret\n", 1, "not the token"),
            (&format!("alice read {}\n", &ALICE[..63]), 1, "64 hex"),
            (&format!("alice read {}g\n", &ALICE[..63]), 1, "64 hex"),
            (
                &format!("alice read {ALICE} docs/\n"),
                1,
                "does not limit tokens to paths",
            ),
            (
                &format!("alice read {ALICE}\nalice write {}\n", "ab".repeat(32)),
                2,
                "used twice (see line 1)",
            ),
            (
                &format!("alice read {ALICE}\nbob write {ALICE}\n"),
                2,
                "on another line",
            ),
        ];
        for (text, line, what) in cases {
            let e = TokenList::parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e:?}");
            assert!(e.what.contains(what), "{text:?}: {e:?}");
            assert!(!e.what.contains("secret\""), "no token in {e:?}");
        }
    }

    #[test]
    fn same_compares_every_byte() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(same(&a, &b));
        b[31] ^= 1;
        assert!(!same(&a, &b));
        b = a;
        b[0] ^= 0x80;
        assert!(!same(&a, &b));
    }

    #[test]
    fn a_bad_reload_keeps_the_tokens_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("alice read {ALICE}\n")).unwrap();
        let store = TokenStore::open(&path).unwrap();
        assert_eq!(store.check("secret").unwrap().name, "alice");
        std::fs::write(&path, "alice reed\n").unwrap();
        let e = store.reload().unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert_eq!(store.check("secret").unwrap().name, "alice");
        assert_eq!(store.generation(), 0);
        std::fs::write(&path, format!("alice write {ALICE}\n")).unwrap();
        assert_eq!(store.reload().unwrap(), 1);
        assert_eq!(store.generation(), 1);
        let old = Grant {
            name: "alice".into(),
            access: Access::Read,
            key: digest("secret"),
        };
        assert_eq!(store.recheck(&old).unwrap().access, Access::Write);
        std::fs::write(&path, "").unwrap();
        store.reload().unwrap();
        assert!(store.recheck(&old).is_none());
        assert!(store.check("secret").is_none());
    }
}
