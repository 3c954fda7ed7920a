//! Changing the served folder and asking the server about itself: `DELETE`, `RENAME`, `HELLO`.

use crate::client::Client;
use crate::error::Error;
use sft_protocol::verbs::{
    DeleteReply, DeleteRequest, HelloReply, HelloRequest, Kind, RenameReply, RenameRequest,
};

impl Client {
    /// Removes the file (or symlink: the link itself) at `remote`; with `folder`, the empty
    /// folder there instead. Returns what was removed. Nothing is removed recursively.
    pub async fn delete(&mut self, remote: &str, folder: bool) -> Result<Kind, Error> {
        let mut x = self.conn.begin()?;
        x.request(&DeleteRequest {
            path: remote.to_owned(),
            folder,
        })
        .await?;
        let reply: DeleteReply = x.reply(&format!("DELETE {remote}")).await?;
        x.done();
        Ok(reply.kind)
    }

    /// Moves the file, folder or symlink `from` to `to` on the server, atomically. An existing
    /// `to` is refused (`exists`) unless `overwrite`; a folder is never replaced. Returns what
    /// was moved.
    pub async fn rename(&mut self, from: &str, to: &str, overwrite: bool) -> Result<Kind, Error> {
        let mut x = self.conn.begin()?;
        x.request(&RenameRequest {
            from: from.to_owned(),
            to: to.to_owned(),
            overwrite,
        })
        .await?;
        let reply: RenameReply = x.reply(&format!("RENAME {from} {to}")).await?;
        x.done();
        Ok(reply.kind)
    }

    /// Asks the server who it is: its name, version, protocol version, verbs and limits.
    pub async fn hello(&mut self) -> Result<HelloReply, Error> {
        let mut x = self.conn.begin()?;
        x.request(&HelloRequest {}).await?;
        let reply = x.reply("HELLO").await?;
        x.done();
        Ok(reply)
    }
}
