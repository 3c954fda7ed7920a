//! TLS for a [`Client`](crate::Client): whom to trust, the handshake, and what a refused
//! certificate tells the user.
//!
//! A server is trusted in one of three ways ([`Trust`]): by the system's root certificates
//! (`--tls`), by a given CA (`--ca FILE`), or by the SHA-256 of its certificate (`--fingerprint
//! HEX`), which is what a self-signed server needs. A self-signed certificate given in the CA
//! file is trusted as itself, though it says it is a CA (see `Verifier::is_own_ca`). A pin says which certificate the server
//! must present, whatever names or dates it carries: like an SSH host key, it is the server's
//! identity. Either way the handshake signature is checked with the certificate's key, so only
//! the holder of the private key passes.

use crate::address::ServerAddr;
use crate::error::Error;
use async_std::net::TcpStream;
use futures_rustls::TlsConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sft_io::{StreamRead, StreamWrite};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// The SHA-256 of a certificate's DER encoding: what `--fingerprint` pins and `sft-server`
/// logs at start-up. Written as 64 lower-case hex digits; parsed from hex in either case,
/// colons between bytes allowed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a certificate.
    pub fn of(cert: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(cert).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(s: &str) -> Result<Fingerprint, String> {
        let hex: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
        let bad = || {
            format!(
                "{s:?} is not a SHA-256 fingerprint: 64 hex digits, as sft-server logs at start-up"
            )
        };
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            out[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(Fingerprint(out))
    }
}

/// Whom a TLS client trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Certificates from an authority among the system's root certificates.
    SystemRoots,
    /// Certificates from the CA (or CAs) in this PEM file.
    Ca(PathBuf),
    /// Exactly the certificate with this fingerprint.
    Pin {
        /// The fingerprint.
        fingerprint: Fingerprint,
        /// Where the pin was remembered (a known-hosts file), when it did not come from the
        /// command line: a different certificate is then reported as a changed identity.
        remembered_in: Option<PathBuf>,
    },
}

/// Why a server's certificate was refused.
#[derive(Debug, Clone)]
pub enum CertificateProblem {
    /// Not issued by an authority the client trusts (a self-signed certificate, for one).
    Unknown,
    /// Issued by a trusted authority, but not for the name or address connected to.
    WrongName {
        /// The names and addresses the certificate is valid for.
        presented: Vec<String>,
    },
    /// Not the certificate pinned.
    WrongPin {
        /// The pin.
        pinned: Fingerprint,
        /// Where the pin was remembered, if it was.
        remembered_in: Option<PathBuf>,
    },
    /// Otherwise invalid (expired, not yet valid, revoked, malformed…).
    Invalid(String),
}

/// A certificate refused, with the fingerprint of what the server presented.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// What is wrong with it.
    pub problem: CertificateProblem,
    /// The SHA-256 of the certificate the server presented.
    pub presented: Fingerprint,
}

/// TLS settings for connections: made once, used for every connection of a run.
#[derive(Clone)]
pub struct TlsSettings {
    trust: Trust,
    provider: Arc<CryptoProvider>,
    /// The verifier of certificate chains, unless the trust is a pin.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The certificates of a `--ca` file, as they are in it.
    ca_certs: Arc<[CertificateDer<'static>]>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Settings for `trust`: loads the system's roots or the CA file (blocking, briefly).
    pub fn new(trust: Trust) -> Result<TlsSettings, Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut ca_certs = Vec::new();
        let roots = match &trust {
            Trust::Pin { .. } => None,
            Trust::SystemRoots => Some(system_roots()?),
            Trust::Ca(path) => {
                ca_certs = ca_file(path)?;
                Some(ca_roots(path, &ca_certs)?)
            }
        };
        let webpki = match roots {
            None => None,
            Some(roots) => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| Error::Request(format!("cannot use the certificates: {e}")))?,
            ),
        };
        Ok(TlsSettings {
            trust,
            provider,
            webpki,
            ca_certs: ca_certs.into(),
        })
    }

    /// How the server is trusted.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// Runs the handshake over `stream` to `server`.
    pub(crate) async fn handshake(
        &self,
        server: &ServerAddr,
        stream: TcpStream,
    ) -> Result<(StreamRead, StreamWrite), Error> {
        let verifier = Arc::new(Verifier {
            trust: self.trust.clone(),
            webpki: self.webpki.clone(),
            ca_certs: self.ca_certs.clone(),
            provider: self.provider.clone(),
            seen: Mutex::default(),
        });
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::Request(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        let name = match server.host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(server.host.clone()).map_err(|_| {
                Error::Request(format!("{:?} is not a valid TLS server name", server.host))
            })?,
        };
        let connected = TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await;
        let seen = verifier.seen.lock().map(|s| s.clone()).unwrap_or_default();
        match connected {
            Ok(tls) => Ok(sft_io::split(tls)),
            Err(e) => Err(match seen {
                Some((presented, Some(problem))) => Error::Certificate {
                    server: server.clone(),
                    refusal: Box::new(Refusal { problem, presented }),
                },
                _ => Error::Tls {
                    server: server.clone(),
                    source: e,
                },
            }),
        }
    }
}

fn system_roots() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(Error::Request(
            "--tls: this machine has no root certificates to check the server's against; \
             pass --ca FILE (the server's CA) or --fingerprint HEX (its certificate)"
                .into(),
        ));
    }
    Ok(roots)
}

/// What is wrong with the CA file `path`, as a local error.
fn ca_error(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |e| Error::Local {
        path: path.to_owned(),
        action: "read the CA certificate",
        source: e,
    }
}

/// The certificates in the CA file `path` (PEM).
fn ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let local = ca_error(path);
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| match e {
            rustls::pki_types::pem::Error::Io(e) => local(e),
            other => local(io::Error::new(
                io::ErrorKind::InvalidData,
                other.to_string(),
            )),
        })
}

/// The certificates of the CA file `path` as roots.
fn ca_roots(path: &Path, certs: &[CertificateDer<'static>]) -> Result<RootCertStore, Error> {
    let local = ca_error(path);
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert.clone())
            .map_err(|e| local(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
    }
    if roots.is_empty() {
        return Err(local(io::Error::new(
            io::ErrorKind::InvalidData,
            "no PEM certificate (\"-----BEGIN CERTIFICATE-----\") in it",
        )));
    }
    Ok(roots)
}

/// Checks the server's certificate against the trust, and remembers what it saw for the
/// error message.
#[derive(Debug)]
struct Verifier {
    trust: Trust,
    webpki: Option<Arc<WebPkiServerVerifier>>,
    ca_certs: Arc<[CertificateDer<'static>]>,
    provider: Arc<CryptoProvider>,
    /// The certificate presented, and what was wrong with it.
    seen: Mutex<Option<(Fingerprint, Option<CertificateProblem>)>>,
}

impl Verifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<(), (CertificateProblem, rustls::Error)> {
        if let Trust::Pin {
            fingerprint,
            remembered_in,
        } = &self.trust
        {
            return match Fingerprint::of(end_entity) == *fingerprint {
                true => Ok(()),
                false => Err((
                    CertificateProblem::WrongPin {
                        pinned: *fingerprint,
                        remembered_in: remembered_in.clone(),
                    },
                    rustls::Error::InvalidCertificate(
                        CertificateError::ApplicationVerificationFailure,
                    ),
                )),
            };
        }
        let webpki = self.webpki.as_ref().expect("a verifier unless pinned");
        webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map(|_| ())
            .or_else(|e| match self.is_own_ca(end_entity, &e) {
                // Its dates were checked before it was found to be a CA; its name is still.
                true => verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name),
                false => Err(e),
            })
            .map_err(|e| {
                let problem = match &e {
                    rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                        CertificateProblem::Unknown
                    }
                    rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForNameContext { presented, .. },
                    ) => CertificateProblem::WrongName {
                        presented: presented.clone(),
                    },
                    rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
                        CertificateProblem::WrongName { presented: vec![] }
                    }
                    other => CertificateProblem::Invalid(other.to_string()),
                };
                (problem, e)
            })
    }
}

impl Verifier {
    /// Whether `end_entity`, refused by webpki with `e`, is a self-signed certificate that is
    /// itself in the CA file: the certificate `openssl req -x509` makes, CA:TRUE, used as the
    /// server's own. webpki refuses a CA certificate as an end entity; given byte for byte in
    /// the CA file, it is a pin (as for curl's `--cacert`). Only that refusal is overlooked,
    /// and only for an exact copy.
    fn is_own_ca(&self, end_entity: &CertificateDer<'_>, e: &rustls::Error) -> bool {
        let ca_as_end_entity = match e {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            ),
            _ => false,
        };
        ca_as_end_entity
            && self
                .ca_certs
                .iter()
                .any(|c| c.as_ref() == end_entity.as_ref())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let checked = self.check(end_entity, intermediates, server_name, ocsp_response, now);
        let (problem, result) = match checked {
            Ok(()) => (None, Ok(ServerCertVerified::assertion())),
            Err((problem, e)) => (Some(problem), Err(e)),
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((Fingerprint::of(end_entity), problem));
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What to tell the user about a refused certificate (one line: the terminal shows control
/// characters escaped).
pub(crate) fn describe(
    server: &ServerAddr,
    r: &Refusal,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    let seen = r.presented;
    match &r.problem {
        CertificateProblem::Unknown => write!(
            f,
            "the certificate of {server} is not signed by an authority this machine trusts \
             (self-signed?); its SHA-256 fingerprint is {seen}. If that is the fingerprint \
             sft-server logged at start-up, connect once with `sft … --fingerprint {seen}` (it \
             is then remembered for {server}), or trust its CA with --ca FILE"
        ),
        CertificateProblem::WrongName { presented } if presented.is_empty() => write!(
            f,
            "the certificate of {server} is not valid for the name {:?}: connect with a name it \
             carries, or pin it with --fingerprint {seen} if you trust it",
            server.host
        ),
        CertificateProblem::WrongName { presented } => write!(
            f,
            "the certificate of {server} is not valid for the name {:?} (it names {}): connect \
             with one of those, or pin it with --fingerprint {seen} if you trust it",
            server.host,
            presented.join(", ")
        ),
        CertificateProblem::WrongPin {
            pinned,
            remembered_in: Some(file),
        } => write!(
            f,
            "WARNING: THE CERTIFICATE OF {server} HAS CHANGED! Someone may be intercepting the \
             connection (a man-in-the-middle attack), or the server's certificate was replaced. \
             Remembered in {}: {pinned}; presented now: {seen}. Nothing was sent. If the \
             certificate was replaced, compare the new fingerprint with the one sft-server logs \
             at start-up, then connect once with --fingerprint {seen}",
            file.display()
        ),
        CertificateProblem::WrongPin {
            pinned,
            remembered_in: None,
        } => write!(
            f,
            "the certificate of {server} does not match --fingerprint {pinned}: its fingerprint \
             is {seen}. Nothing was sent. Someone may be intercepting the connection, or the pin \
             is mistyped or outdated: compare it with the fingerprint sft-server logs at start-up"
        ),
        CertificateProblem::Invalid(why) => write!(
            f,
            "the certificate of {server} is not valid: {why} (its SHA-256 fingerprint is \
             {seen}; --fingerprint pins it regardless, if you trust it)"
        ),
    }
}

/// What to tell the user about a handshake that failed for another reason than the
/// certificate.
pub(crate) fn describe_failure(
    server: &ServerAddr,
    e: &io::Error,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    let plaintext = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|inner| {
            matches!(
                inner,
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
                    | rustls::Error::InvalidMessage(_)
            )
        });
    let closed = matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    );
    if closed {
        write!(
            f,
            "{server} closed the connection at once, before the TLS handshake: this address \
             may not be allowed there (sft-server --allow), or the server was stopping"
        )
    } else if plaintext {
        write!(
            f,
            "{server} did not answer in TLS: it serves plaintext only (connect without --tls, \
             --ca and --fingerprint, and only over a network you trust), or it is not an sft \
             server"
        )
    } else {
        write!(f, "TLS handshake with {server} failed: {e}")
    }
}
