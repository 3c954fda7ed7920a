//! A minimal HTTP/1.1 responder for the metrics page: `GET /metrics` gets the page, any other
//! path `404`, any other method `405`; one request per connection. A request is read within a
//! deadline and a size bound, and only a few scrapes are served at once, so that neither a slow
//! nor a hostile scraper can hold the server's threads or descriptors.

use async_std::net::{TcpListener, TcpStream};
use async_std::task;
use futures::{AsyncReadExt, AsyncWriteExt};
use sft_io::Deadline;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The most a request (line and headers) may hold.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a scraper has to send its request, and to take the reply.
const DEADLINE: Duration = Duration::from_secs(5);
/// Scrapes served at once; more are closed unanswered.
const IN_FLIGHT: usize = 8;

/// Serves the page `render` makes on `listener` until cancelled.
pub(crate) async fn serve(listener: TcpListener, render: Arc<dyn Fn() -> String + Send + Sync>) {
    let busy = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: the transfer listener needs them more.
                log::debug!(error:% = e; "metrics: accept failed; backing off");
                task::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if busy.fetch_add(1, Ordering::Relaxed) >= IN_FLIGHT {
            busy.fetch_sub(1, Ordering::Relaxed);
            log::debug!(peer:% = peer; "metrics: too many scrapes at once; closed");
            continue;
        }
        let (busy, render) = (Arc::clone(&busy), Arc::clone(&render));
        task::spawn(async move {
            let answered = Deadline::after(DEADLINE)
                .run(answer(stream, &*render))
                .await;
            if !matches!(answered, Ok(Ok(()))) {
                log::debug!(peer:% = peer; "metrics: request not answered (slow, cut or malformed)");
            }
            busy.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Reads one request and answers it.
async fn answer(
    mut stream: TcpStream,
    render: &(dyn Fn() -> String + Send + Sync),
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(end) = find(&request, b"\r\n\r\n") {
            break end;
        }
        if request.len() >= MAX_REQUEST {
            return reply(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            )
            .await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        request.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]);
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => {
            reply(
                &mut stream,
                "200 OK",
                super::expose::CONTENT_TYPE,
                &render(),
            )
            .await
        }
        (_, "/metrics") => {
            reply(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "only GET\n",
            )
            .await
        }
        _ => {
            reply(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "not found; the metrics are at /metrics\n",
            )
            .await
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn reply(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let allow = if status.starts_with("405") {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    // Lets the scraper read to the end before the socket goes.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Binds the metrics listener on `addr` (`host:port`).
pub(crate) async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {addr}: {e}"),
        )
    })?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
