//! The `sft` binary's own command line. (Having an integration test here also makes
//! `cargo test --workspace` build the binary that the end-to-end tests run.)

use std::process::Command;

fn sft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sft"))
        .args(args)
        .output()
        .expect("run sft")
}

#[test]
fn help_shows_examples_and_exit_codes() {
    for args in [&["--help"][..], &["get", "--help"], &["send", "--help"]] {
        let out = sft(args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("EXAMPLES") && text.contains("EXIT CODES"),
            "{text}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["get"],
        &["get", "host"],
        &["frobnicate"],
        &["get", "host:notaport", "x"],
    ] {
        let out = sft(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn version_is_printed() {
    let out = sft(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn each_subcommand_says_what_it_does() {
    let says = [
        ("get", "Download REMOTE"),
        ("send", "Upload LOCAL"),
        ("ls", "List the folder DIR"),
        ("stat", "Show the kind, size"),
        ("call", "Send any VERB"),
    ];
    let top = sft(&["--help"]);
    let top = String::from_utf8_lossy(&top.stdout);
    for (sub, what) in says {
        assert!(top.contains(what), "sft --help lacks {what:?}: {top}");
        let out = sft(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(what),
            "sft {sub} --help lacks {what:?}: {text}"
        );
        assert!(!text.contains("Options every"), "sft {sub} --help: {text}");
    }
    assert!(!top.contains("Options every"), "{top}");
}

#[test]
fn addresses_that_mix_in_a_port_or_a_path_are_explained() {
    for (args, says) in [
        (&["get", "::1:43187", "x"][..], "[::1]:43187"),
        (&["get", "::1:43187"], "[::1]:43187"),
        (&["get", "host:7005:dir/file"], "HOST[:PORT] REMOTE"),
        (&["get", "host:dir/file", "."], "HOST[:PORT] REMOTE"),
        (&["ls", "host:7005:dir"], "HOST[:PORT] REMOTE"),
    ] {
        let out = sft(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("(\""), "{args:?}: no Rust values: {err}");
    }
}

#[test]
fn usage_lines_show_options_as_options() {
    let out = sft(&["get", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sft get [OPTIONS] SERVER REMOTE [LOCAL]"),
        "{text}"
    );
    assert!(!text.contains("[FLAGS]"), "{text}");
    // An option with a default is listed under OPTIONS only, never in a usage line.
    let usage: String = text
        .lines()
        .skip_while(|l| !l.starts_with("USAGE"))
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(!usage.contains("--port"), "{usage}");
}
