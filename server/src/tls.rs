//! TLS on the listening port (`--tls-cert`/`--tls-key`, `--tls-self-signed`).
//!
//! A server with a certificate speaks TLS only: it never serves a request in plaintext. It looks
//! at a connection's first byte only to answer a mistaken plaintext client clearly: a TLS
//! connection starts with a handshake record (0x16); anything else (an sft request starts with
//! `{`) gets one `tls_required` error line and a close, and no request is read.

use async_std::net::TcpStream;
use futures::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sft_io::{Deadline, StreamRead, StreamWrite};
use sft_protocol::{encode_error, ErrorCode, WireError};
use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The first byte of a TLS connection: the content type of a handshake record.
const HANDSHAKE: u8 = 0x16;

/// How a connection to a TLS server began.
pub(crate) enum Opened {
    /// A TLS session, its handshake complete.
    Tls(StreamRead, StreamWrite),
    /// The peer closed before its first byte.
    Closed,
    /// A plaintext request: answered `tls_required` and closed.
    Plaintext,
}

/// The server's TLS settings, loaded once at start-up.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    /// The SHA-256 of the certificate's DER, lower-case hex: what clients pin.
    pub(crate) fingerprint: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn context(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Tls {
    /// Loads a certificate chain and its private key (PEM; RSA, ECDSA or Ed25519). Blocking.
    pub(crate) fn load(cert: &Path, key: &Path) -> io::Result<Tls> {
        let certs = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                invalid(format!(
                    "cannot read the certificate {}: {e}",
                    cert.display()
                ))
            })?;
        let Some(leaf) = certs.first() else {
            return Err(invalid(format!(
                "{} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
                cert.display()
            )));
        };
        let fingerprint = fingerprint(leaf);
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            invalid(format!(
                "cannot read the private key {} (PEM: PKCS#8, PKCS#1 or SEC1): {e}",
                key.display()
            ))
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| invalid(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                invalid(format!(
                    "the certificate {} and the key do not make a usable pair: {e}",
                    cert.display()
                ))
            })?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            fingerprint,
        })
    }

    /// Reads the first byte of a new connection (waiting at most `idle` for it) and, for a TLS
    /// connection, completes the handshake within `handshake`. A plaintext request is answered
    /// `tls_required` and closed. Handshakes are counted in `metrics`, if kept.
    pub(crate) async fn open(
        &self,
        stream: TcpStream,
        idle: Duration,
        handshake: Duration,
        metrics: Option<&crate::metrics::Metrics>,
    ) -> io::Result<Opened> {
        let mut first = [0u8; 1];
        let n = Deadline::after(idle)
            .run(stream.peek(&mut first))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no request within the idle timeout ({} s)", idle.as_secs()),
                )
            })??;
        if n == 0 {
            return Ok(Opened::Closed);
        }
        if first[0] != HANDSHAKE {
            log::debug!(first_byte = first[0]; "not a TLS handshake: answering tls_required");
            refuse_plaintext(stream, handshake).await;
            return Ok(Opened::Plaintext);
        }
        let accepted = Deadline::after(handshake)
            .run(self.acceptor.accept(stream))
            .await;
        if let Some(metrics) = metrics {
            metrics.handshake(matches!(accepted, Ok(Ok(_))));
        }
        let tls = accepted
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "TLS handshake not completed within {} s",
                        handshake.as_secs()
                    ),
                )
            })?
            .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))?;
        if log::log_enabled!(log::Level::Debug) {
            let (stream, conn) = tls.get_ref();
            let peer = stream.peer_addr().map(|a| a.to_string());
            let version = conn.protocol_version().map(|v| format!("{v:?}"));
            let cipher = conn
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()));
            log::debug!(
                peer = peer.unwrap_or_default(), version = version.unwrap_or_default(),
                cipher = cipher.unwrap_or_default(), sni = conn.server_name().unwrap_or("-");
                "TLS established"
            );
        }
        let (read, write) = sft_io::split(tls);
        Ok(Opened::Tls(read, write))
    }
}

/// Answers a plaintext request to a TLS server with one error line, then closes: after its
/// write side, reading what the client sent (within `limit`), so that the close does not
/// reset the connection before the client has read the line.
async fn refuse_plaintext(mut stream: TcpStream, limit: Duration) {
    let err = WireError::new(
        ErrorCode::TlsRequired,
        "this server speaks only TLS: connect with --tls (a certificate from an authority this \
         machine trusts), --ca FILE (its CA) or --fingerprint HEX (the SHA-256 of its \
         certificate, which the server logs at start-up)",
    );
    let mut line = Vec::new();
    encode_error(&err, &mut line);
    let _ = async {
        Deadline::after(limit)
            .run(stream.write_all(&line))
            .await
            .map_err(|_| io::ErrorKind::TimedOut)??;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        let drain = async {
            while left > 0 {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => left = left.saturating_sub(n),
                }
            }
            Ok::<_, io::Error>(())
        };
        Deadline::after(limit)
            .run(drain)
            .await
            .map_err(|_| io::ErrorKind::TimedOut)?
    }
    .await;
}

/// The SHA-256 of a certificate's DER, lower-case hex.
pub(crate) fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `--tls-self-signed DIR`: the certificate and key in `DIR`, created there (ECDSA P-256, for
/// `localhost`, `127.0.0.1`, `::1` and this machine's name) if they do not exist yet, and
/// reused when they do. Blocking. Returns the certificate's and the key's paths.
pub(crate) fn self_signed(dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok((cert, key)),
        (false, false) => {}
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} holds only one of cert.pem and key.pem: remove it, or add the other",
                    dir.display()
                ),
            ))
        }
    }
    fs::create_dir_all(dir).map_err(context(format!("cannot create {}", dir.display())))?;
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if !host.is_empty() && !names.contains(&host) {
        names.push(host);
    }
    let generated = (|| {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sft-server (self-signed)");
        let cert = params.self_signed(&pair)?;
        Ok::<_, rcgen::Error>((cert.pem(), pair.serialize_pem()))
    })()
    .map_err(|e| io::Error::other(format!("cannot create a certificate: {e}")))?;
    write_new(&key, generated.1.as_bytes(), 0o600)?;
    write_new(&cert, generated.0.as_bytes(), 0o644)?;
    log::info!(cert:% = cert.display(), key:% = key.display(); "created a self-signed certificate");
    Ok((cert, key))
}

/// Writes a file that must not exist yet, with `mode` from its creation on. It appears whole or
/// not at all (written under a temporary name, then linked to its own): whoever waits for it
/// never reads half a key.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(context(format!("cannot create {}", temporary.display())))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(context(format!("cannot write {}", temporary.display())))
        .and_then(|()| {
            fs::hard_link(&temporary, path)
                .map_err(context(format!("cannot create {}", path.display())))
        });
    let _ = fs::remove_file(&temporary);
    written
}
