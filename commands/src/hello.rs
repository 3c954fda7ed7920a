//! `HELLO`: who the server is, what it answers, and its limits.
//!
//! ```text
//! > {"verb":"HELLO"}
//! < {"ok":true,"server":"sft-server","version":"0.1.0","protocol":1,"verbs":[{"name":"DELETE",
//!   "summary":"…","writes":true},…],"limits":{"read_only":false,"max_connections":1024}}
//! ```
//!
//! It holds no lock a transfer holds, and touches the file system only through the root's
//! storage probe (one `statfs` off the executor, at most about once a second; see
//! `sandbox/health.rs`), so a load balancer can send it as often as it likes as a health
//! check. While the storage does not answer, it is answered `unavailable`: the balancer takes
//! the server out until the storage answers again (PROTOCOL.md §5 HELLO).

use crate::command::{BoxFuture, Command, CommandError};
use crate::context::Context;
use crate::sandbox::{StorageHealth, PROBE_DEADLINE};
use sft_protocol::verbs::{HelloLimits, HelloReply, HelloRequest, Verb, VerbInfo};
use sft_protocol::{ErrorCode, Request, WireError};

/// The `HELLO` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hello;

impl Command for Hello {
    fn verb(&self) -> &'static str {
        HelloRequest::NAME
    }

    fn summary(&self) -> &'static str {
        "the server's name, version, verbs and limits (a cheap health check)"
    }

    fn public(&self) -> bool {
        true
    }

    fn health_check(&self) -> bool {
        true
    }

    fn run<'a>(
        &'a self,
        request: Request<'a>,
        ctx: &'a mut Context<'_>,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let _: HelloRequest = request.args()?;
            if let StorageHealth::Down { since, why } = ctx.root.storage_health().await {
                return Err(WireError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the served folder's storage has not answered for {:.0} s ({why}); try another server",
                        since.as_secs_f64().max(PROBE_DEADLINE.as_secs_f64())
                    ),
                )
                .into());
            }
            let registry = ctx.registry;
            let verbs = registry
                .commands()
                .into_iter()
                .map(|(name, command)| VerbInfo {
                    name: name.to_owned(),
                    summary: command.summary().to_owned(),
                    writes: command.writes(),
                })
                .collect();
            let reply = HelloReply {
                server: registry.server_name().to_owned(),
                version: registry.server_version().to_owned(),
                protocol: sft_protocol::VERSION,
                verbs,
                limits: HelloLimits {
                    read_only: ctx.limits.read_only,
                    max_upload_bytes: ctx.limits.max_upload_bytes,
                    max_connections: ctx.limits.max_connections.map(|n| n as u64),
                    auth: ctx.limits.tokens.is_some(),
                    zstd_max_level: ctx.limits.compress_level_max,
                },
            };
            ctx.reply_ok(&reply).await.map_err(CommandError::Abort)
        })
    }
}
