//! `sft info SERVER [--json]`: who the server is, its verbs and its limits (`HELLO`).

use super::stdout_failed;
use super::terminal;
use crate::{escape, Failure};
use sft_client::Client;
use std::io::Write;

/// Prints the server's `HELLO` reply: readable lines, or the reply's fields as one JSON line.
pub(crate) async fn run(client: &mut Client, json: bool) -> Result<(), Failure> {
    let hello = client.hello().await?;
    let mut text = if json {
        terminal::json(&serde_json::to_string(&hello).expect("replies serialize"))
    } else {
        let limits = &hello.limits;
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let upload = limits
            .max_upload_bytes
            .map_or("no limit".to_owned(), |n| format!("{n} bytes"));
        let connections = limits
            .max_connections
            .map_or("not said".to_owned(), |n| n.to_string());
        let token = match limits.auth {
            true => "required (--token TOKEN or SFT_TOKEN; HELLO and AUTH need none)",
            false => "not required",
        };
        let mut t = format!(
            "server           {} {}\naddress          {}\nprotocol         {}\ntoken            {}\nread-only        {}\nmax upload       {}\nmax connections  {}\nverbs:",
            escape(&hello.server),
            escape(&hello.version),
            client.server(),
            hello.protocol,
            token,
            yes_no(limits.read_only),
            upload,
            connections,
        );
        let width = hello.verbs.iter().map(|v| v.name.len()).max().unwrap_or(0);
        for verb in &hello.verbs {
            let writes = if verb.writes { "writes" } else { "reads " };
            t += &format!(
                "\n  {:<width$}  {writes}  {}",
                escape(&verb.name),
                escape(&verb.summary)
            );
        }
        t
    };
    text.push('\n');
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_failed)
}
