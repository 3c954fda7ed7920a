//! The plugin design's promise: the server crate knows no verb. Its source is scanned for string
//! literals naming a verb ("GET", "send", …) and for uses of the typed verb definitions
//! (`sft_protocol::verbs`); verbs belong in `commands/` or in crates of their own.

use std::path::{Path, PathBuf};

/// The verbs to look for: every built-in (so a new one is covered without editing this test),
/// and the issue's four by name in case `builtins()` itself ever shrinks.
fn verbs() -> Vec<String> {
    let mut verbs: Vec<String> = sft_commands::builtins()
        .verbs()
        .into_iter()
        .map(str::to_owned)
        .collect();
    for v in ["GET", "SEND", "LIST", "STAT"] {
        if !verbs.iter().any(|x| x == v) {
            verbs.push(v.to_owned());
        }
    }
    verbs
}

/// What a Rust source file holds outside its comments: its string literals' contents, and the
/// rest of its code with every literal blanked out.
#[derive(Debug, Default)]
struct Lexed {
    strings: Vec<String>,
    code: String,
}

/// A small Rust lexer: enough to tell comments (line, nested block, doc), string literals
/// (plain, byte, raw with any number of `#`), char literals and lifetimes apart.
fn lex(src: &str) -> Lexed {
    let s: Vec<char> = src.chars().collect();
    let mut out = Lexed::default();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r'))) && (i == 0 || !ident(s[i - 1])) && {
            let start = if c == 'b' { i + 2 } else { i + 1 };
            let mut j = start;
            while s.get(j) == Some(&'#') {
                j += 1;
            }
            s.get(j) == Some(&'"')
        } {
            // Raw string: r"…", r#"…"#, br##"…"##.
            let mut j = if c == 'b' { i + 2 } else { i + 1 };
            let mut hashes = 0;
            while s[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            let start = j;
            loop {
                if j >= s.len() {
                    break;
                }
                if s[j] == '"' && (1..=hashes).all(|k| s.get(j + k) == Some(&'#')) {
                    break;
                }
                j += 1;
            }
            out.strings.push(s[start..j.min(s.len())].iter().collect());
            out.code.push_str("\"\"");
            i = j + 1 + hashes;
        } else if c == '"' {
            let mut j = i + 1;
            let mut lit = String::new();
            while j < s.len() && s[j] != '"' {
                if s[j] == '\\' {
                    j += 1;
                    // Keep the escaped character itself; `\u{..}` spelling is left as is.
                }
                if let Some(&ch) = s.get(j) {
                    lit.push(ch);
                }
                j += 1;
            }
            out.strings.push(lit);
            out.code.push_str("\"\"");
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1f600}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < s.len() && s[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if s.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                out.code.push(c);
                i += 1;
            }
        } else {
            out.code.push(c);
            i += 1;
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read source folder") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// Where in `lexed` a verb is named: string literals equal to a verb (any case), and code that
/// reaches for the typed verb definitions.
fn findings(lexed: &Lexed, verbs: &[String]) -> Vec<String> {
    let mut found: Vec<String> = lexed
        .strings
        .iter()
        .filter(|lit| verbs.iter().any(|v| lit.trim().eq_ignore_ascii_case(v)))
        .map(|lit| format!("string literal {lit:?}"))
        .collect();
    let code: String = lexed.code.split_whitespace().collect();
    for needle in [
        "verbs::",
        "GetRequest",
        "SendRequest",
        "ListRequest",
        "StatRequest",
    ] {
        if code.contains(needle) {
            found.push(format!("code naming `{needle}`"));
        }
    }
    found
}

#[test]
fn the_lexer_tells_literals_from_comments() {
    let src = r####"
        // "GET" in a line comment
        /* "SEND" in a /* nested */ block comment */
        /// a doc comment: {"verb":"LIST"}
        fn f<'a>(x: &'a str) -> char { let _ = r#"raw "STAT" inside"#; let _ = b"get"; 'q' }
        fn g() { let _ = "escaped \" quote"; let _ = '\''; let _ = "Stat"; }
        use sft_protocol::verbs::GetRequest;
    "####;
    let lexed = lex(src);
    assert_eq!(
        lexed.strings,
        ["raw \"STAT\" inside", "get", "escaped \" quote", "Stat"]
    );
    let found = findings(&lexed, &verbs());
    assert_eq!(
        found,
        [
            "string literal \"get\"",
            "string literal \"Stat\"",
            "code naming `verbs::`",
            "code naming `GetRequest`"
        ]
    );
}

#[test]
fn the_server_crate_names_no_verb() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let files = rust_files(&src);
    assert!(
        files.len() >= 5,
        "server sources not found in {}",
        src.display()
    );
    let verbs = verbs();
    // The metrics responder speaks HTTP, whose method GET is no sft verb: that one literal, in
    // that one file, is not a verb named.
    let http = src.join("metrics/http.rs");
    assert!(
        http.exists(),
        "{} moved: update this exception",
        http.display()
    );
    let mut offences = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for finding in findings(&lex(&text), &verbs) {
            if file == http && finding == "string literal \"GET\"" {
                continue;
            }
            offences.push(format!("{}: {finding}", file.display()));
        }
    }
    assert!(
        offences.is_empty(),
        "the server must not name verbs; move verb logic to commands/:\n{}",
        offences.join("\n")
    );
}
