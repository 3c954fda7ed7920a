//! Access control: the tokens file (`--tokens`: loading, reloading) and the address allow-list
//! (`--allow`).
//!
//! The tokens are checked where every request is admitted, in one ordered pipeline with the
//! other checks ([`sft_commands::admit`]): until a connection has authenticated, every verb but
//! the public ones (`HELLO`, `AUTH`) answers `unauthorized`; under a `read` token, a verb that
//! writes answers `forbidden`. Without `--tokens` nothing is checked.

mod allow;
mod tokens;

pub(crate) use allow::AllowList;
pub use allow::Cidr;

use sft_commands::auth::Tokens;
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

#[cfg(test)]
mod tests {
    use super::*;
    use sft_commands::{admit, Access, BoxFuture, Command, CommandError, Context, Limits};
    use sft_protocol::{decode_request, ErrorCode, Request};

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

    /// The tokens file's tokens, checked where requests are admitted; a reload withdraws one.
    #[test]
    fn the_tokens_file_is_what_admission_checks() {
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
        let limits = Limits {
            tokens: gate.tokens(),
            ..Limits::default()
        };
        let request = decode_request(br#"{"verb":"TOUCH"}"#).unwrap();
        let code = |access: &mut Access, verb: &ThirdParty| {
            admit(verb, &request, &limits, access).err().map(|e| e.code)
        };
        let authenticated = |token: &str| {
            let mut access = Access::new();
            access.granted(tokens.check(token).unwrap());
            access
        };

        let mut anon = Access::new();
        assert_eq!(code(&mut anon, &PUBLIC), None);
        assert_eq!(code(&mut anon, &READS), Some(ErrorCode::Unauthorized));
        assert_eq!(code(&mut anon, &WRITES), Some(ErrorCode::Unauthorized));

        let mut reader = authenticated("r");
        assert_eq!(code(&mut reader, &READS), None);
        let refused = admit(&WRITES, &request, &limits, &mut reader).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden);
        assert!(refused.message.contains("may only read"), "{refused}");

        let mut writer = authenticated("w");
        assert_eq!(code(&mut writer, &WRITES), None);
        assert!(tokens.check("x").is_none());

        // A reload that withdraws bob's token: his connection must authenticate again.
        std::fs::write(&path, format!("alice read {}\n", hex("r"))).unwrap();
        gate.reload().unwrap();
        assert_eq!(code(&mut writer, &WRITES), Some(ErrorCode::Unauthorized));
        assert_eq!(code(&mut reader, &READS), None);

        // Without tokens nothing is checked.
        let open = Limits::default();
        let mut any = Access::new();
        assert!(admit(&WRITES, &request, &open, &mut any).is_ok());
    }
}
