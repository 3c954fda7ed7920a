//! TLS end to end: `sft-server --tls-cert/--tls-key` and `--tls-self-signed`, and `sft --tls`,
//! `--ca`, `--fingerprint` and the known-hosts file: transfers, resumes, refused certificates
//! with messages that say what to do, and the answer a plaintext client gets.

use async_std::task;
use futures::AsyncReadExt;
use sft_integration_tests::{bin, expect_code, random_bytes, stderr, Raw, Relay, ServerProcess};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Exit code of a refused certificate.
const UNTRUSTED: i32 = 8;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A CA, and certificates it issues, in a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate and its key, as files.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    fingerprint: String,
}

impl Cert {
    /// Writes `cert` and `key` to `dir` as FILE.pem and FILE.key.
    fn write(
        dir: &std::path::Path,
        file: &str,
        cert: &rcgen::Certificate,
        key: &rcgen::KeyPair,
    ) -> Cert {
        let (cert_path, key_path) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        fs::write(&cert_path, cert.pem()).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        Cert {
            cert: cert_path,
            key: key_path,
            fingerprint: hex(&Sha256::digest(cert.der())),
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.to_str().unwrap().into(),
            "--tls-key".into(),
            self.key.to_str().unwrap().into(),
        ]
    }
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sft test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `names`, issued by the CA, with a key of `alg`.
    fn issue(&self, file: &str, names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Cert {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Cert::write(self.dir.path(), file, &cert, &key)
    }
}

/// A served folder holding `a.txt` and a 3 MiB `big.bin`, and a home for the client.
struct Setup {
    root: tempfile::TempDir,
    home: tempfile::TempDir,
    cwd: tempfile::TempDir,
    big: Vec<u8>,
}

impl Setup {
    fn new() -> Setup {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("a.txt"), "hello\n").unwrap();
        let big = random_bytes(3 << 20, 1301);
        fs::write(root.path().join("big.bin"), &big).unwrap();
        Setup {
            root,
            home: tempfile::tempdir().unwrap(),
            cwd: tempfile::tempdir().unwrap(),
            big,
        }
    }

    fn server(&self, args: &[String]) -> ServerProcess {
        let mut all = vec!["--host", "127.0.0.1"];
        all.extend(args.iter().map(String::as_str));
        ServerProcess::start(self.root.path(), &all)
    }

    /// Runs `sft` with HOME in a temporary folder (its known-hosts file there).
    fn sft(&self, args: &[&str]) -> Output {
        Command::new(bin("sft"))
            .args(args)
            .current_dir(self.cwd.path())
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SFT_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run sft")
    }

    fn known_hosts(&self) -> PathBuf {
        self.home.path().join(".config/sft/known_hosts")
    }
}

/// The fingerprint the server logged at start-up.
fn logged_fingerprint(server: &ServerProcess) -> String {
    let logs = server.logs.lock().unwrap();
    logs.iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["fingerprint"].as_str().map(str::to_owned))
        .expect("a fingerprint in the start-up log")
}

/// GET, SEND and LIST over TLS, and a download cut midway and resumed, trusting the server
/// by `trust` (options before the server address).
fn transfers_work(setup: &Setup, server: &ServerProcess, host: &str, trust: &[&str]) {
    let addr = format!("{host}:{}", server.addr.port());
    let with = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![args[0].into()];
        v.extend(trust.iter().map(|s| s.to_string()));
        v.extend(args[1..].iter().map(|s| s.to_string()));
        v
    };
    let run = |args: &[&str]| {
        let v = with(args);
        setup.sft(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let out = run(&["get", &addr, "big.bin", "got.bin"]);
    expect_code(&out, 0);
    assert!(fs::read(setup.cwd.path().join("got.bin")).unwrap() == setup.big);

    fs::write(setup.cwd.path().join("up.bin"), random_bytes(1 << 20, 7)).unwrap();
    let out = run(&["send", &addr, "up.bin", "in/up.bin"]);
    expect_code(&out, 0);
    assert!(fs::read(setup.root.path().join("in/up.bin")).unwrap() == random_bytes(1 << 20, 7));

    let out = run(&["ls", &addr]);
    expect_code(&out, 0);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("a.txt") && listing.contains("big.bin"),
        "{listing}"
    );

    // Through a relay that cuts the first connection after 1 MiB: the retry resumes.
    let relay = Relay::cut_once_after(server.addr, 1 << 20);
    let via = format!("{host}:{}", relay.addr.port());
    let out = run(&[
        "get",
        "--retries",
        "2",
        "--json",
        &via,
        "big.bin",
        "resumed.bin",
    ]);
    expect_code(&out, 0);
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert!(
        report["resumed_from"].as_u64().unwrap() > 0,
        "not resumed: {report}"
    );
    assert!(fs::read(setup.cwd.path().join("resumed.bin")).unwrap() == setup.big);
    relay.join();
}

#[test]
fn transfers_over_tls_trusting_a_ca() {
    let pki = Pki::new();
    let cert = pki.issue(
        "server",
        &["localhost", "127.0.0.1"],
        &rcgen::PKCS_ECDSA_P256_SHA256,
    );
    let setup = Setup::new();
    let server = setup.server(&cert.args());
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();
    transfers_work(&setup, &server, "127.0.0.1", &["--ca", ca]);
    // By name too: the name is checked like the address.
    let out = setup.sft(&[
        "ls",
        "--ca",
        ca,
        &format!("localhost:{}", server.addr.port()),
    ]);
    expect_code(&out, 0);
    // A CA is trusted for this run only: nothing is remembered.
    assert!(!setup.known_hosts().exists());
}

#[test]
fn transfers_over_tls_pinning_a_self_signed_certificate() {
    let setup = Setup::new();
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().join("tls");
    let args = vec![
        "--tls-self-signed".to_owned(),
        dir.to_str().unwrap().to_owned(),
    ];
    let server = setup.server(&args);
    let fingerprint = logged_fingerprint(&server);
    // The logged fingerprint is that of the certificate created.
    let pem = fs::read(dir.join("cert.pem")).unwrap();
    let der = rustls_pem_der(&pem);
    assert_eq!(fingerprint, hex(&Sha256::digest(&der)));
    transfers_work(
        &setup,
        &server,
        "127.0.0.1",
        &["--fingerprint", &fingerprint],
    );

    // The pin was remembered: a later connection needs no flag, and is TLS (a plaintext one
    // would be refused with tls_required).
    let remembered = fs::read_to_string(setup.known_hosts()).unwrap();
    let line = format!("127.0.0.1:{} {fingerprint}", server.addr.port());
    assert!(remembered.lines().any(|l| l == line), "{remembered}");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(setup.known_hosts())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "known_hosts readable by others: {mode:o}");
    let out = setup.sft(&["get", &server.addr.to_string(), "a.txt", "-"]);
    expect_code(&out, 0);
    assert_eq!(out.stdout, b"hello\n");

    // The same folder on a later start: the same certificate.
    drop(server);
    let again = setup.server(&args);
    assert_eq!(logged_fingerprint(&again), fingerprint);
}

/// The DER of the first certificate of a PEM file.
fn rustls_pem_der(pem: &[u8]) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem)
        .unwrap()
        .to_vec()
}

#[test]
fn rsa_and_ed25519_keys_serve_too() {
    let pki = Pki::new();
    let setup = Setup::new();
    for (name, alg) in [
        ("rsa", &rcgen::PKCS_RSA_SHA256),
        ("ed25519", &rcgen::PKCS_ED25519),
    ] {
        let cert = pki.issue(name, &["127.0.0.1"], alg);
        let server = setup.server(&cert.args());
        assert_eq!(logged_fingerprint(&server), cert.fingerprint);
        let out = setup.sft(&[
            "get",
            "--ca",
            pki.ca_file().to_str().unwrap(),
            &server.addr.to_string(),
            "a.txt",
            "-",
        ]);
        expect_code(&out, 0);
        assert_eq!(out.stdout, b"hello\n", "{name}");
    }
}

#[test]
fn an_unknown_certificate_is_refused_with_its_fingerprint_and_how_to_pin_it() {
    let pki = Pki::new();
    let cert = pki.issue("server", &["127.0.0.1"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let setup = Setup::new();
    let server = setup.server(&cert.args());
    // The system's roots do not know the test CA.
    let out = setup.sft(&["ls", "--tls", &server.addr.to_string()]);
    expect_code(&out, UNTRUSTED);
    let err = stderr(&out);
    assert!(err.contains(&cert.fingerprint), "{err}");
    assert!(
        err.contains(&format!("--fingerprint {}", cert.fingerprint)),
        "{err}"
    );
    assert!(!setup.known_hosts().exists());
    let out = setup.sft(&["ls", "--tls", "--json", &server.addr.to_string()]);
    expect_code(&out, UNTRUSTED);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("untrusted_certificate"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_wrong_pin_is_refused_and_nothing_is_remembered() {
    let pki = Pki::new();
    let cert = pki.issue("server", &["127.0.0.1"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let other = pki.issue("other", &["127.0.0.1"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let setup = Setup::new();
    let server = setup.server(&cert.args());
    fs::write(setup.cwd.path().join("x.txt"), "secret\n").unwrap();
    let out = setup.sft(&[
        "send",
        "--fingerprint",
        &other.fingerprint,
        &server.addr.to_string(),
        "x.txt",
        "x.txt",
    ]);
    expect_code(&out, UNTRUSTED);
    let err = stderr(&out);
    assert!(err.contains("does not match --fingerprint"), "{err}");
    assert!(err.contains(&cert.fingerprint), "{err}");
    assert!(err.contains("Nothing was sent"), "{err}");
    assert!(!setup.root.path().join("x.txt").exists());
    assert!(!setup.known_hosts().exists());
    // Not a fingerprint at all: a usage error.
    let out = setup.sft(&["ls", "--fingerprint", "abc", &server.addr.to_string()]);
    expect_code(&out, 2);
}

#[test]
fn a_changed_certificate_of_a_remembered_server_is_refused_loudly() {
    let pki = Pki::new();
    let cert = pki.issue("server", &["127.0.0.1"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let setup = Setup::new();
    let server = setup.server(&cert.args());
    let key = server.addr.to_string();
    let stale = "ab".repeat(32);
    fs::create_dir_all(setup.known_hosts().parent().unwrap()).unwrap();
    fs::write(
        setup.known_hosts(),
        format!(
            "# pins\nfiles.example:7005 {}\n{key} {stale}\n",
            "cd".repeat(32)
        ),
    )
    .unwrap();
    let out = setup.sft(&["ls", &key]);
    expect_code(&out, UNTRUSTED);
    let err = stderr(&out);
    assert!(err.contains("HAS CHANGED"), "{err}");
    assert!(
        err.contains(&stale) && err.contains(&cert.fingerprint),
        "{err}"
    );
    assert!(
        err.contains(&format!("--fingerprint {}", cert.fingerprint)),
        "{err}"
    );
    // Accepting the new certificate explicitly replaces the line, and keeps the others.
    let out = setup.sft(&["ls", "--fingerprint", &cert.fingerprint, &key]);
    expect_code(&out, 0);
    let text = fs::read_to_string(setup.known_hosts()).unwrap();
    assert!(
        text.contains(&format!("{key} {}", cert.fingerprint)),
        "{text}"
    );
    assert!(!text.contains(&stale), "{text}");
    assert!(text.contains("files.example:7005"), "{text}");
    let out = setup.sft(&["ls", &key]);
    expect_code(&out, 0);
}

#[test]
fn a_certificate_for_another_name_is_refused_with_the_names_it_carries() {
    let pki = Pki::new();
    let cert = pki.issue("server", &["files.example"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let setup = Setup::new();
    let server = setup.server(&cert.args());
    let out = setup.sft(&[
        "ls",
        "--ca",
        pki.ca_file().to_str().unwrap(),
        &server.addr.to_string(),
    ]);
    expect_code(&out, UNTRUSTED);
    let err = stderr(&out);
    assert!(err.contains("not valid for the name"), "{err}");
    assert!(err.contains("files.example"), "{err}");
    assert!(err.contains(&cert.fingerprint), "{err}");
}

#[test]
fn a_plaintext_client_of_a_tls_server_gets_tls_required_and_a_close() {
    let pki = Pki::new();
    let cert = pki.issue("server", &["127.0.0.1"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let setup = Setup::new();
    let server = setup.server(&cert.args());
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(b"{\"verb\":\"HELLO\"}\n").await;
        let reply = raw.reply().await;
        assert_eq!(reply["ok"], false, "{reply}");
        assert_eq!(reply["code"], "tls_required", "{reply}");
        assert!(
            reply["message"].as_str().unwrap().contains("--fingerprint"),
            "{reply}"
        );
        // Then the end of the stream, not a hang.
        let mut rest = Vec::new();
        let read =
            async_std::io::timeout(Duration::from_secs(10), raw.stream.read_to_end(&mut rest))
                .await;
        assert!(read.is_ok() && rest.is_empty(), "{read:?} {rest:?}");
    });
    // The client shows the server's sentence, as a refusal.
    let out = setup.sft(&["ls", &server.addr.to_string()]);
    expect_code(&out, 4);
    assert!(stderr(&out).contains("speaks only TLS"), "{}", stderr(&out));
}

#[test]
fn a_tls_client_of_a_plaintext_server_is_told_so() {
    let setup = Setup::new();
    let server = setup.server(&[]);
    let out = setup.sft(&[
        "ls",
        "--fingerprint",
        &"ab".repeat(32),
        &server.addr.to_string(),
    ]);
    expect_code(&out, 3);
    assert!(
        stderr(&out).contains("did not answer in TLS"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_token_goes_over_tls() {
    let pki = Pki::new();
    let cert = pki.issue("server", &["127.0.0.1"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let setup = Setup::new();
    let token = "tls-t0ken-5e1d";
    let tokens = setup.home.path().join("tokens");
    fs::write(
        &tokens,
        format!("alice read {}\n", hex(&Sha256::digest(token.as_bytes()))),
    )
    .unwrap();
    let mut args = cert.args();
    args.extend(["--tokens".to_owned(), tokens.to_str().unwrap().to_owned()]);
    let server = setup.server(&args);
    let ca = pki.ca_file();
    let base = ["get", "--ca", ca.to_str().unwrap()];
    let addr = server.addr.to_string();
    let addr = addr.as_str();
    let out = setup.sft(&[&base[..], &[addr, "a.txt", "-"]].concat());
    expect_code(&out, 4);
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    let out = setup.sft(&[&base[..], &["--token", token, addr, "a.txt", "-"]].concat());
    expect_code(&out, 0);
    assert_eq!(out.stdout, b"hello\n");
    let logs = server.logs.lock().unwrap();
    assert!(logs.iter().all(|l| !l.contains(token)));
}

/// The handshake is bounded by the header timeout: a client that sends the first byte of a
/// handshake and nothing more is closed.
#[test]
fn a_stalled_handshake_is_closed_within_the_header_timeout() {
    let pki = Pki::new();
    let cert = pki.issue("server", &["127.0.0.1"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let setup = Setup::new();
    let mut args = cert.args();
    args.extend(["--header-timeout".to_owned(), "1".to_owned()]);
    let server = setup.server(&args);
    task::block_on(async {
        let mut raw = Raw::connect(server.addr).await;
        raw.write(&[0x16, 0x03, 0x01]).await;
        let mut rest = Vec::new();
        let read =
            async_std::io::timeout(Duration::from_secs(10), raw.stream.read_to_end(&mut rest))
                .await;
        assert!(read.is_ok(), "not closed: {read:?}");
    });
}

/// A self-signed certificate that says it is a CA (`CA:TRUE`, as `openssl req -x509` makes
/// them) for `names`, as files in `dir`.
fn self_signed_ca(dir: &std::path::Path, file: &str, names: &[&str]) -> Cert {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Cert::write(dir, file, &cert, &key)
}

/// `--ca cert.pem` with the server's own self-signed CA:TRUE certificate works (as `curl
/// --cacert` does), its name still checked; another such certificate in the file is refused.
#[test]
fn ca_trusts_the_servers_own_self_signed_certificate_and_checks_its_name() {
    let setup = Setup::new();
    let dir = tempfile::tempdir().unwrap();
    let own = self_signed_ca(dir.path(), "own", &["127.0.0.1"]);
    let other = self_signed_ca(dir.path(), "other", &["127.0.0.1"]);
    let server = setup.server(&own.args());
    let port = server.addr.port().to_string();
    let get = |ca: &Cert, host: &str| {
        setup.sft(&[
            "get",
            "--ca",
            ca.cert.to_str().unwrap(),
            &format!("{host}:{port}"),
            "a.txt",
            "-",
        ])
    };
    let out = get(&own, "127.0.0.1");
    expect_code(&out, 0);
    assert_eq!(out.stdout, b"hello\n");
    assert!(!setup.known_hosts().exists());
    // Not the certificate in the file: refused as before; the right certificate, reached by
    // a name it does not carry: refused too.
    for (ca, host, why) in [
        (&other, "127.0.0.1", own.fingerprint.as_str()),
        (&own, "localhost", "not valid for the name"),
    ] {
        let out = get(ca, host);
        expect_code(&out, UNTRUSTED);
        assert!(stderr(&out).contains(why), "{host}: {}", stderr(&out));
    }
}

/// A known-hosts line for the server whose pin cannot be read stops the client, naming the
/// file and the line: it never falls back to plaintext (the server here speaks only that).
#[test]
fn a_damaged_known_hosts_line_never_means_plaintext() {
    let setup = Setup::new();
    let server = setup.server(&[]);
    let key = server.addr.to_string();
    fs::create_dir_all(setup.known_hosts().parent().unwrap()).unwrap();
    for line in [format!("{key} {}", "zz".repeat(32)), key.clone()] {
        fs::write(
            setup.known_hosts(),
            format!("other.example:7005 {}\n{line}\n", "cd".repeat(32)),
        )
        .unwrap();
        let out = setup.sft(&["get", &key, "a.txt", "-"]);
        expect_code(&out, 1);
        assert!(out.stdout.is_empty());
        let err = stderr(&out);
        assert!(
            err.contains(setup.known_hosts().to_str().unwrap()) && err.contains("line 2"),
            "{err}"
        );
        assert!(err.contains("--fingerprint"), "{err}");
    }
    // The server saw no request at all.
    let logs = server.logs.lock().unwrap();
    assert!(logs.iter().all(|l| !l.contains("a.txt")), "{logs:?}");
}

/// Two connections in one process with different settings (TLS trusting a CA, plaintext with
/// a rate limit): each keeps its own, since nothing is process-wide.
#[test]
fn two_connections_with_other_settings_live_side_by_side() {
    use sft_client::{parse_server, Client, ConnectOptions, TlsSettings, Trust};
    let pki = Pki::new();
    let cert = pki.issue("server", &["127.0.0.1"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (secure, plain) = (Setup::new(), Setup::new());
    let tls_server = secure.server(&cert.args());
    let plain_server = plain.server(&[]);
    let rate = 2 << 20;
    let tls = ConnectOptions {
        tls: Some(TlsSettings::new(Trust::Ca(pki.ca_file())).unwrap()),
        ..ConnectOptions::default()
    };
    let slow = ConnectOptions {
        rate_limit: Some(rate),
        ..ConnectOptions::default()
    };
    let addr = |s: &ServerProcess| parse_server(&s.addr.to_string(), 7005).unwrap();
    task::block_on(async {
        let mut a = Client::connect_with(addr(&tls_server), &tls).await.unwrap();
        let mut b = Client::connect_with(addr(&plain_server), &slow)
            .await
            .unwrap();
        assert!(a.is_encrypted() && !b.is_encrypted());
        let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
        let started = std::time::Instant::now();
        let (ra, rb) = futures::join!(a.get("big.bin", &mut got_a), async {
            let r = b.get("big.bin", &mut got_b).await;
            (r, started.elapsed())
        });
        ra.unwrap();
        let (rb, slow_took) = rb;
        rb.unwrap();
        assert!(got_a == secure.big && got_b == plain.big);
        // 3 MiB at 2 MiB/s, less the first burst (a tenth of a second's worth).
        assert!(slow_took >= Duration::from_millis(1300), "{slow_took:?}");
        // The TLS settings did not leak into the plaintext connection, nor back.
        let plain_tls = Client::connect_with(addr(&plain_server), &tls).await;
        assert!(plain_tls.is_err(), "TLS to a plaintext server");
        let again = Client::connect_with(addr(&tls_server), &ConnectOptions::default()).await;
        let mut again = again.unwrap();
        assert!(!again.is_encrypted());
        assert!(
            again.stat("a.txt").await.is_err(),
            "a TLS server refuses plaintext"
        );
    });
}
