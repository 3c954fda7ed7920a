//! Admission: the checks every request passes before its handler runs, for every verb alike,
//! driven by what the verb declares ([`Command::public`], [`Command::writes`],
//! [`Command::accepts`]), never by the verb itself. They run in this order, and the first that
//! fails is the answer:
//!
//! 1. **Who you are.** On a server that requires a token, a connection that has not presented
//!    one (with `AUTH`) gets `unauthorized` for every verb but the public ones (`HELLO`,
//!    `AUTH`). A grant from before a reload of the tokens is checked again first: the token may
//!    be gone, or have another access.
//! 2. **May you write.** A verb that writes gets `read_only` on a read-only server, and
//!    `forbidden` under a `read` token.
//! 3. **What may follow the header.** A request that declares a body (a `size` or a `body`
//!    field) the verb does not take is `bad_request` (an unknown `body` framing, `unsupported`).
//!
//! So a client is told first what it must fix before anything else can succeed: a connection
//! without a token hears `unauthorized` even from a read-only server, and a writing request
//! to a read-only server hears `read_only` whatever its body.
//!
//! Nothing has been read past the header, nothing written: the session answers the refusal
//! (after reading and dropping an eager body) and the connection goes on. A third-party verb
//! gets all of it without a line of its own.

use crate::auth::{unauthorized, Grant};
use crate::command::{Accepts, Command};
use crate::context::Limits;
use sft_protocol::auth::Access as TokenAccess;
use sft_protocol::body::Upload;
use sft_protocol::{ErrorCode, Request, WireError};

/// What one connection has authenticated as. The session keeps it from one request to the
/// next; `AUTH` changes it through [`Context::authenticate`](crate::Context::authenticate).
#[derive(Debug, Default)]
pub struct Access {
    grant: Option<Grant>,
    /// The tokens' [generation](crate::auth::Tokens::generation) `grant` was last checked
    /// against.
    generation: u64,
}

impl Access {
    /// A connection that has not authenticated.
    pub fn new() -> Access {
        Access::default()
    }

    /// What the connection authenticated as, if it did.
    pub fn grant(&self) -> Option<&Grant> {
        self.grant.as_ref()
    }

    /// A token was accepted: the connection acts under `grant` from its next request on. (A
    /// verb does this with [`Context::authenticate`](crate::Context::authenticate).)
    pub fn granted(&mut self, grant: Grant) {
        // Checked again before the next request: a reload may have come between the check of
        // the token and now.
        self.generation = u64::MAX;
        self.grant = Some(grant);
    }
}

/// Admits `request` for `command` on a connection in state `access`, on a server with
/// `limits`, by the checks of this module in their order. Returns the body the request
/// declares, if any (which the verb [accepts](Command::accepts)); the error to answer with
/// otherwise.
pub fn admit(
    command: &dyn Command,
    request: &Request<'_>,
    limits: &Limits,
    access: &mut Access,
) -> Result<Option<Upload>, WireError> {
    let grant =
        identify(command, limits, access).inspect_err(|e| refused(command, "identity", e))?;
    if let Some(grant) = grant {
        log::trace!(verb = command.verb(), name = grant.name.as_str(); "admission: under the token");
    }
    if command.writes() {
        if limits.read_only {
            log::debug!(verb = command.verb(), step = "writing", reason = "read-only server"; "admission refused");
            return Err(WireError::new(
                ErrorCode::ReadOnly,
                "this server is read-only",
            ));
        }
        if let Some(grant) = grant.filter(|g| g.access == TokenAccess::Read) {
            log::debug!(verb = command.verb(), step = "writing", reason = "read token"; "admission refused");
            return Err(WireError::forbidden(format!(
                "this token ({}) may only read: {} writes",
                grant.name,
                command.verb()
            )));
        }
    }
    body_rule(command, request).inspect_err(|e| refused(command, "body", e))
}

/// The debug line of a refusal at `step` (`identity`, `writing` or `body`: the steps above).
fn refused(command: &dyn Command, step: &str, err: &WireError) {
    log::debug!(verb = command.verb(), step = step, outcome = err.code.as_str(), reason = err.message.as_str(); "admission refused");
}

/// Step 1: who the connection is, on a server that requires a token; `None` where none is
/// required, or for a public verb.
fn identify<'a>(
    command: &dyn Command,
    limits: &Limits,
    access: &'a mut Access,
) -> Result<Option<&'a Grant>, WireError> {
    let Some(tokens) = &limits.tokens else {
        return Ok(None);
    };
    if command.public() {
        return Ok(None);
    }
    let generation = tokens.generation();
    if access.generation != generation {
        access.generation = generation;
        if let Some(grant) = &access.grant {
            let now = tokens.recheck(grant);
            if now.is_none() {
                log::info!(name = grant.name.as_str(); "token withdrawn by a reload: the connection must authenticate again");
            }
            access.grant = now;
        }
    }
    match &access.grant {
        Some(grant) => Ok(Some(grant)),
        None => Err(unauthorized("this server requires a token")),
    }
}

/// Step 3: what may follow the header (see [`Accepts`]).
fn body_rule(command: &dyn Command, request: &Request<'_>) -> Result<Option<Upload>, WireError> {
    if !request.declares_body() {
        return Ok(None);
    }
    let accepts = command.accepts();
    let verb = command.verb();
    if accepts == Accepts::Nothing {
        return Err(WireError::bad_request(format!(
            "{verb} takes no body: its request must carry neither \"size\" nor \"body\""
        )));
    }
    match request.body()? {
        Some(upload) if !accepts.allows(upload) => {
            let what = match upload {
                Upload::Sized(_) => "a body of declared \"size\"",
                Upload::Chunked => "a chunked body",
            };
            Err(WireError::bad_request(format!("{verb} takes no {what}")))
        }
        body => Ok(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Tokens;
    use crate::command::{BoxFuture, CommandError};
    use crate::context::Context;
    use sft_protocol::decode_request;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A verb that declares what it is told to and never runs here.
    struct Declares {
        accepts: Accepts,
        writes: bool,
        public: bool,
    }

    impl Command for Declares {
        fn verb(&self) -> &'static str {
            "T"
        }
        fn writes(&self) -> bool {
            self.writes
        }
        fn public(&self) -> bool {
            self.public
        }
        fn accepts(&self) -> Accepts {
            self.accepts
        }
        fn run<'a>(
            &'a self,
            _: Request<'a>,
            _: &'a mut Context<'_>,
        ) -> BoxFuture<'a, Result<(), CommandError>> {
            unreachable!("admission is checked without running the verb")
        }
    }

    /// Two tokens, `r` (read) and `w` (write); `reload` withdraws `w`.
    #[derive(Debug, Default)]
    struct TwoTokens {
        generation: AtomicU64,
    }

    fn grant(name: &str, access: TokenAccess) -> Grant {
        Grant {
            name: name.into(),
            access,
            key: [name.as_bytes()[0]; 32],
        }
    }

    impl Tokens for TwoTokens {
        fn check(&self, token: &str) -> Option<Grant> {
            match token {
                "r" => Some(grant("r", TokenAccess::Read)),
                "w" if self.generation() == 0 => Some(grant("w", TokenAccess::Write)),
                _ => None,
            }
        }
        fn generation(&self) -> u64 {
            self.generation.load(Ordering::Relaxed)
        }
        fn recheck(&self, grant: &Grant) -> Option<Grant> {
            self.check(&grant.name)
        }
    }

    /// The server's settings in a row of the table.
    #[derive(Debug, Clone, Copy)]
    enum Server {
        Open,
        ReadOnly,
        Tokens,
        TokensReadOnly,
    }

    /// The connection's state in a row of the table.
    #[derive(Debug, Clone, Copy)]
    enum Session {
        Anonymous,
        ReadToken,
        WriteToken,
    }

    fn admitted(
        verb: &Declares,
        server: Server,
        session: Session,
        line: &str,
    ) -> Result<Option<Upload>, ErrorCode> {
        let tokens = Arc::new(TwoTokens::default());
        let limits = Limits {
            read_only: matches!(server, Server::ReadOnly | Server::TokensReadOnly),
            tokens: matches!(server, Server::Tokens | Server::TokensReadOnly)
                .then(|| tokens.clone() as Arc<dyn Tokens>),
            ..Limits::default()
        };
        let mut access = Access::new();
        match session {
            Session::Anonymous => {}
            Session::ReadToken => access.granted(tokens.check("r").unwrap()),
            Session::WriteToken => access.granted(tokens.check("w").unwrap()),
        }
        let request = decode_request(line.as_bytes()).expect("a valid header");
        admit(verb, &request, &limits, &mut access).map_err(|e| e.code)
    }

    const fn verb(accepts: Accepts, writes: bool, public: bool) -> Declares {
        Declares {
            accepts,
            writes,
            public,
        }
    }

    #[test]
    fn the_checks_run_in_their_order() {
        use Accepts::*;
        use ErrorCode as E;
        use Server::*;
        use Session::*;
        let reads = verb(Nothing, false, false);
        let writes = verb(Nothing, true, false);
        let uploads = verb(Sized, true, false);
        let public = verb(Nothing, false, true);
        let plain = r#"{"verb":"T"}"#;
        let sized = r#"{"verb":"T","size":3}"#;
        let both = r#"{"verb":"T","size":1,"body":"chunked"}"#;
        let ok = |body| Ok::<_, ErrorCode>(body);
        let three = Some(Upload::Sized(3));
        #[rustfmt::skip]
        let table = [
            // Nothing to check.
            (&reads, Open, Anonymous, plain, ok(None)),
            (&writes, Open, Anonymous, plain, ok(None)),
            (&uploads, Open, Anonymous, sized, ok(three)),
            // 1. Who you are: before everything else.
            (&reads, Tokens, Anonymous, plain, Err(E::Unauthorized)),
            (&writes, Tokens, Anonymous, plain, Err(E::Unauthorized)),
            (&writes, TokensReadOnly, Anonymous, plain, Err(E::Unauthorized)),
            (&reads, Tokens, Anonymous, sized, Err(E::Unauthorized)),
            (&uploads, TokensReadOnly, Anonymous, both, Err(E::Unauthorized)),
            (&public, Tokens, Anonymous, plain, ok(None)),
            (&public, TokensReadOnly, Anonymous, plain, ok(None)),
            (&public, Tokens, Anonymous, sized, Err(E::BadRequest)),
            (&reads, Tokens, ReadToken, plain, ok(None)),
            (&reads, Tokens, WriteToken, plain, ok(None)),
            // 2. May you write: a read-only server, then a read token.
            (&writes, ReadOnly, Anonymous, plain, Err(E::ReadOnly)),
            (&reads, ReadOnly, Anonymous, plain, ok(None)),
            (&writes, TokensReadOnly, WriteToken, plain, Err(E::ReadOnly)),
            (&writes, TokensReadOnly, ReadToken, plain, Err(E::ReadOnly)),
            (&writes, Tokens, ReadToken, plain, Err(E::Forbidden)),
            (&uploads, Tokens, ReadToken, both, Err(E::Forbidden)),
            (&writes, Tokens, WriteToken, plain, ok(None)),
            (&uploads, ReadOnly, Anonymous, both, Err(E::ReadOnly)),
            // A read token means nothing where no token is required.
            (&writes, Open, ReadToken, plain, ok(None)),
            // 3. What may follow the header.
            (&reads, Open, Anonymous, sized, Err(E::BadRequest)),
            (&writes, Tokens, WriteToken, sized, Err(E::BadRequest)),
            (&uploads, Tokens, WriteToken, sized, ok(three)),
            (&uploads, Tokens, WriteToken, both, Err(E::BadRequest)),
        ];
        for (verb, server, session, line, want) in table {
            let (accepts, writes, public) = (verb.accepts, verb.writes, verb.public);
            assert_eq!(
                admitted(verb, server, session, line),
                want,
                "{accepts:?} writes={writes} public={public}, {server:?}, {session:?}: {line}"
            );
        }
    }

    #[test]
    fn bodies_a_verb_does_not_take_are_refused() {
        use Accepts::*;
        let bad = Err(ErrorCode::BadRequest);
        let cases = [
            (Nothing, r#"{"verb":"T"}"#, Ok(None)),
            (Nothing, r#"{"verb":"T","size":3}"#, bad),
            (Nothing, r#"{"verb":"T","size":0}"#, bad),
            (Nothing, r#"{"verb":"T","body":"chunked"}"#, bad),
            // Any `size` or `body` at all, even one no reader could frame.
            (Nothing, r#"{"verb":"T","body":"gzip"}"#, bad),
            (Nothing, r#"{"verb":"T","size":"3"}"#, bad),
            (
                Sized,
                r#"{"verb":"T","size":3}"#,
                Ok(Some(Upload::Sized(3))),
            ),
            (Sized, r#"{"verb":"T"}"#, Ok(None)),
            (Sized, r#"{"verb":"T","body":"chunked"}"#, bad),
            (
                Chunked,
                r#"{"verb":"T","body":"chunked"}"#,
                Ok(Some(Upload::Chunked)),
            ),
            (Chunked, r#"{"verb":"T","size":3}"#, bad),
            (
                SizedOrChunked,
                r#"{"verb":"T","size":3}"#,
                Ok(Some(Upload::Sized(3))),
            ),
            (
                SizedOrChunked,
                r#"{"verb":"T","body":"chunked"}"#,
                Ok(Some(Upload::Chunked)),
            ),
            (
                SizedOrChunked,
                r#"{"verb":"T","size":1,"body":"chunked"}"#,
                bad,
            ),
            (SizedOrChunked, r#"{"verb":"T","size":-1}"#, bad),
            (
                SizedOrChunked,
                r#"{"verb":"T","body":"gzip"}"#,
                Err(ErrorCode::Unsupported),
            ),
        ];
        for (accepts, line, want) in cases {
            let got = admitted(
                &verb(accepts, false, false),
                Server::Open,
                Session::Anonymous,
                line,
            );
            assert_eq!(got, want, "{accepts:?} {line}");
        }
    }

    #[test]
    fn a_grant_withdrawn_by_a_reload_must_authenticate_again() {
        let tokens = Arc::new(TwoTokens::default());
        let limits = Limits {
            tokens: Some(tokens.clone()),
            ..Limits::default()
        };
        let writes = verb(Accepts::Nothing, true, false);
        let request = decode_request(br#"{"verb":"T"}"#).unwrap();
        let mut access = Access::new();
        access.granted(tokens.check("w").unwrap());
        assert!(admit(&writes, &request, &limits, &mut access).is_ok());
        tokens.generation.store(1, Ordering::Relaxed);
        let refused = admit(&writes, &request, &limits, &mut access).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Unauthorized);
        assert!(access.grant().is_none());
    }
}
