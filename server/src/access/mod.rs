//! Access control: tokens (`--tokens`), the checks a session makes before each request, and
//! the address allow-list (`--allow`).
//!
//! The checks are driven by what each verb declares, never by the verb itself: until a
//! connection has authenticated, every verb but the [public](Command::public) ones (`HELLO`,
//! `AUTH`) answers `unauthorized`;
//! under a `read` token, a verb whose [`Command::writes`] is true answers `forbidden`. A
//! third-party verb gets both without a line of its own. Without `--tokens` nothing is checked.

mod allow;
mod tokens;

pub(crate) use allow::AllowList;
pub use allow::Cidr;

use sft_commands::auth::{unauthorized, Grant, Tokens};
use sft_commands::Command;
use sft_protocol::auth::Access;
use sft_protocol::{ErrorCode, WireError};
use std::io;
use std::path::Path;
use std::sync::Arc;
use tokens::TokenStore;

/// The server's token checking, shared by every session: none without `--tokens`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate {
    tokens: Option<Arc<TokenStore>>,
}

impl Gate {
    /// Loads the tokens file, if one is given (blocking: run it off the async threads).
    pub(crate) fn open(tokens: Option<&Path>) -> io::Result<Gate> {
        let Some(path) = tokens else {
            return Ok(Gate::default());
        };
        let store = Arc::new(TokenStore::open(path)?);
        let n = store.current().len();
        log::info!(file:% = path.display(), tokens = n; "tokens loaded: requests need a token");
        if n == 0 {
            log::warn!(file:% = path.display(); "the tokens file holds no token: only HELLO and AUTH will be answered");
        }
        Ok(Gate {
            tokens: Some(store),
        })
    }

    /// The access control of a new connection.
    pub(crate) fn session(&self) -> SessionAccess {
        SessionAccess {
            grant: None,
            generation: 0,
        }
    }

    /// Whether `command` may run on a connection in state `access`; the answer to send if not.
    /// Called where the session refuses requests before their handler runs, so that a
    /// refused request is treated like every other refusal there (nothing read past its
    /// header).
    pub(crate) fn admit(
        &self,
        access: &mut SessionAccess,
        command: &dyn Command,
    ) -> Result<(), WireError> {
        let Some(store) = &self.tokens else {
            return Ok(());
        };
        // Those that declare themselves public: who the server is, and the token itself.
        if command.public() {
            return Ok(());
        }
        // After a SIGHUP the token may be gone, or have another access.
        let generation = store.generation();
        if access.generation != generation {
            access.generation = generation;
            if let Some(grant) = &access.grant {
                let now = store.recheck(grant);
                if now.is_none() {
                    log::info!(name = grant.name.as_str(); "token withdrawn by a reload: the connection must authenticate again");
                }
                access.grant = now;
            }
        }
        let Some(grant) = &access.grant else {
            return Err(unauthorized("this server requires a token"));
        };
        if grant.access == Access::Read && command.writes() {
            return Err(WireError::new(
                ErrorCode::Forbidden,
                format!(
                    "this token ({}) may only read: {} writes",
                    grant.name,
                    command.verb()
                ),
            ));
        }
        Ok(())
    }

    /// Reloads the tokens file, if there is one, logging the outcome: a file that cannot be
    /// read or parsed keeps the tokens in force. Blocking.
    pub(crate) fn reload(&self) -> io::Result<()> {
        let Some(store) = &self.tokens else {
            return Ok(());
        };
        match store.reload() {
            Ok(n) => {
                log::info!(file:% = store.path().display(), tokens = n; "tokens reloaded");
                Ok(())
            }
            Err(e) => {
                log::error!(error:% = e; "tokens not reloaded: the previous tokens stay in force");
                Err(e)
            }
        }
    }

    /// The tokens, for `AUTH` to check ([`sft_commands::Limits::tokens`]).
    pub(crate) fn tokens(&self) -> Option<Arc<dyn Tokens>> {
        self.tokens.clone().map(|t| t as Arc<dyn Tokens>)
    }

    /// Whether a tokens file is in use.
    pub(crate) fn is_active(&self) -> bool {
        self.tokens.is_some()
    }
}

/// What one connection authenticated as.
#[derive(Debug)]
pub(crate) struct SessionAccess {
    grant: Option<Grant>,
    /// The token list generation `grant` was last checked against.
    generation: u64,
}

impl SessionAccess {
    /// An `AUTH` accepted a token: the connection acts under `grant` from now on.
    pub(crate) fn granted(&mut self, gate: &Gate, grant: Grant, session: u64) {
        if gate.is_active() {
            log::info!(session = session, name = grant.name.as_str(), access = grant.access.as_str(); "authenticated");
        }
        // Checked again before the next request: a reload may have come between the check of
        // the token and now.
        self.generation = u64::MAX;
        self.grant = Some(grant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sft_commands::{BoxFuture, CommandError, Context};
    use sft_protocol::Request;

    /// A third-party verb that declares what it is told to and never runs here.
    struct ThirdParty {
        writes: bool,
        public: bool,
    }

    impl Command for ThirdParty {
        fn verb(&self) -> &'static str {
            "TOUCH"
        }
        fn writes(&self) -> bool {
            self.writes
        }
        fn public(&self) -> bool {
            self.public
        }
        fn run<'a>(
            &'a self,
            _: Request<'a>,
            _: &'a mut Context<'_>,
        ) -> BoxFuture<'a, Result<(), CommandError>> {
            unreachable!("access is checked without running the verb")
        }
    }

    const READS: ThirdParty = ThirdParty {
        writes: false,
        public: false,
    };
    const WRITES: ThirdParty = ThirdParty {
        writes: true,
        public: false,
    };
    const PUBLIC: ThirdParty = ThirdParty {
        writes: false,
        public: true,
    };

    fn code(r: Result<(), WireError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn third_party_verbs_are_checked_from_what_they_declare() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let hex = |t: &str| -> String {
            tokens::digest(t)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        std::fs::write(
            &path,
            format!("alice read {}\nbob write {}\n", hex("r"), hex("w")),
        )
        .unwrap();
        let gate = Gate::open(Some(&path)).unwrap();
        let tokens = gate.tokens().unwrap();

        let mut anon = gate.session();
        assert_eq!(code(gate.admit(&mut anon, &PUBLIC)), None);
        assert_eq!(
            code(gate.admit(&mut anon, &READS)),
            Some(ErrorCode::Unauthorized)
        );
        assert_eq!(
            code(gate.admit(&mut anon, &WRITES)),
            Some(ErrorCode::Unauthorized)
        );

        let mut reader = gate.session();
        reader.granted(&gate, tokens.check("r").unwrap(), 1);
        assert_eq!(code(gate.admit(&mut reader, &READS)), None);
        let refused = gate.admit(&mut reader, &WRITES).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden);
        assert!(refused.message.contains("may only read"), "{refused}");

        let mut writer = gate.session();
        writer.granted(&gate, tokens.check("w").unwrap(), 2);
        assert_eq!(code(gate.admit(&mut writer, &WRITES)), None);
        assert!(tokens.check("x").is_none());

        // Without tokens nothing is checked.
        let open = Gate::default();
        let mut any = open.session();
        assert_eq!(code(open.admit(&mut any, &WRITES)), None);
    }
}
