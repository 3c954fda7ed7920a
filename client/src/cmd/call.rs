//! `sft call SERVER VERB [JSON-ARGS] [-o FILE] [-i FILE]`: any verb, including ones this client
//! was not built with. The reply line goes to standard output; then any body, to standard
//! output or to FILE.

use super::stdout_failed;
use super::terminal::{json, JsonLines};
use crate::Failure;
use async_std::fs::File;
use async_std::io::BufReader;
use serde_json::{Map, Value};
use sft_client::{Body, Client, Error};
use std::io::Write;
use std::path::PathBuf;

/// A parsed `sft call` command line.
pub(crate) struct Call {
    verb: String,
    args: Map<String, Value>,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
}

impl Call {
    /// Checks the arguments before anything is sent: JSON-ARGS must be a JSON object, and a
    /// body from standard input needs its length in it.
    pub(crate) fn parse(
        verb: String,
        args: Option<&str>,
        input: Option<PathBuf>,
        output: Option<PathBuf>,
    ) -> Result<Call, Failure> {
        let args = match args.map(serde_json::from_str::<Value>) {
            None => Map::new(),
            Some(Ok(Value::Object(map))) => map,
            Some(Ok(_)) => {
                return Err(Failure::Usage(
                    "JSON-ARGS must be a JSON object, e.g. '{\"path\":\"a.txt\"}'".into(),
                ))
            }
            Some(Err(e)) => return Err(Failure::Usage(format!("JSON-ARGS is not JSON: {e}"))),
        };
        let chunked = args.get("body").and_then(Value::as_str) == Some("chunked");
        if input.as_deref().is_some_and(|p| p.as_os_str() == "-")
            && !args.contains_key("size")
            && !chunked
        {
            return Err(Failure::Usage(
                "a body read from standard input needs its length in JSON-ARGS' \"size\", or \
                 \"body\":\"chunked\" to stream it"
                    .into(),
            ));
        }
        let output = output.filter(|p| p.as_os_str() != "-");
        Ok(Call {
            verb,
            args,
            input,
            output,
        })
    }

    /// Sends the call and prints its reply line, then its body.
    pub(crate) async fn run(mut self, client: &mut Client) -> Result<(), Failure> {
        let response = match self.input.take() {
            None => client.call(&self.verb, &self.args).await,
            Some(path) if path.as_os_str() == "-" => {
                let mut stdin = async_std::io::stdin();
                client.call_upload(&self.verb, &self.args, &mut stdin).await
            }
            Some(path) => {
                let local = |action| {
                    let path = path.clone();
                    move |source| Error::Local {
                        path,
                        action,
                        source,
                    }
                };
                let file = File::open(&path).await.map_err(local("open"))?;
                let len = file.metadata().await.map_err(local("read"))?.len();
                if !self.args.contains_key("body") {
                    self.args.entry("size").or_insert(len.into());
                }
                let mut reader = BufReader::new(file);
                client
                    .call_upload(&self.verb, &self.args, &mut reader)
                    .await
            }
        };
        let response = match response {
            Ok(response) => response,
            Err(Error::Remote(e)) => {
                // An error reply is a reply too: show it as the server sent it.
                let mut line = Vec::new();
                sft_protocol::encode_error(&e, &mut line);
                print_line(&String::from_utf8_lossy(&line))?;
                return Err(Error::Remote(e).into());
            }
            Err(e) => return Err(e.into()),
        };
        print_line(&format!("{}\n", response.header()))?;
        match &self.output {
            Some(path) => response.read_body_to_file(path).await?,
            // A line stream is JSON from the server, shown like its reply line…
            None if response.body() == Body::Lines => {
                let mut out = JsonLines::new(std::io::stdout().lock());
                response.read_body(&mut out).await?
            }
            // …a sized body is a file's bytes, written as they are (like `sft get FILE -`).
            None => response.read_body(&mut async_std::io::stdout()).await?,
        };
        Ok(())
    }
}

/// Prints a reply line, its terminal controls escaped.
fn print_line(line: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    let mut shown = String::new();
    for part in line.split_inclusive('\n') {
        match part.strip_suffix('\n') {
            Some(text) => shown += &(json(text) + "\n"),
            None => shown += &json(part),
        }
    }
    out.write_all(shown.as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_failed)
}
