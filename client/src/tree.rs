//! Changing the served folder and asking the server about itself: `DELETE`, `RENAME`,
//! `SETTIME`, `HELLO`.

use crate::client::Client;
use crate::error::Error;
use sft_protocol::verbs::{
    DeleteReply, DeleteRequest, HelloReply, HelloRequest, Kind, RenameReply, RenameRequest,
    SetTimeReply, SetTimeRequest,
};

impl Client {
    /// Removes the file (or symlink: the link itself) at `remote`; with `folder`, the empty
    /// folder there instead. Returns what was removed. Nothing is removed recursively.
    pub async fn delete(&mut self, remote: &str, folder: bool) -> Result<Kind, Error> {
        let request = DeleteRequest {
            path: remote.to_owned(),
            folder,
        };
        let reply: DeleteReply = self.conn.ask(&request, &format!("DELETE {remote}")).await?;
        Ok(reply.kind)
    }

    /// Moves the file, folder or symlink `from` to `to` on the server, atomically. An existing
    /// `to` is refused (`exists`) unless `overwrite`; a folder is never replaced. Returns what
    /// was moved.
    pub async fn rename(&mut self, from: &str, to: &str, overwrite: bool) -> Result<Kind, Error> {
        let request = RenameRequest {
            from: from.to_owned(),
            to: to.to_owned(),
            overwrite,
        };
        let during = format!("RENAME {from} {to}");
        let reply: RenameReply = self.conn.ask(&request, &during).await?;
        Ok(reply.kind)
    }

    /// Gives the file or folder `remote` the modification time `mtime` (whole seconds since the
    /// epoch) and changes nothing else (`SETTIME`; a symlink is refused, not followed). Returns
    /// what it is. A server older than the verb refuses it with `unknown_verb`.
    pub async fn set_mtime(&mut self, remote: &str, mtime: i64) -> Result<Kind, Error> {
        let request = SetTimeRequest {
            path: remote.to_owned(),
            mtime,
        };
        let reply: SetTimeReply = self
            .conn
            .ask(&request, &format!("SETTIME {remote}"))
            .await?;
        Ok(reply.kind)
    }

    /// Asks the server who it is: its name, version, protocol version, verbs and limits.
    pub async fn hello(&mut self) -> Result<HelloReply, Error> {
        self.conn.ask(&HelloRequest {}, "HELLO").await
    }
}
