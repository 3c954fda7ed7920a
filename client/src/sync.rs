//! What a folder sync computes on its side: the BLAKE3 of a local file, in short blocking
//! steps, to compare with the server's (from a `LIST` with hashes, see [`Client::list_with`]).
//!
//! [`Client::list_with`]: crate::Client::list_with

use async_std::task::spawn_blocking;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// How much of a local file one blocking step of [`hash_file`] reads: a pool thread is never
/// held long, whatever the file's size.
const HASH_STEP: u64 = 8 * 1024 * 1024;

/// The BLAKE3 of the local file at `path` (lower-case hex), read in steps of a few MiB, each a
/// short blocking task. Without `follow`, a symlink at `path` is refused (`O_NOFOLLOW`), as is
/// anything but a regular file.
pub async fn hash_file(path: &Path, follow: bool) -> io::Result<String> {
    let at = path.to_owned();
    let file = spawn_blocking(move || {
        use std::os::unix::fs::OpenOptionsExt;
        let mut flags = rustix::fs::OFlags::NONBLOCK;
        if !follow {
            flags |= rustix::fs::OFlags::NOFOLLOW;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(at)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok::<File, io::Error>(file)
    })
    .await?;
    let mut state = Some((file, blake3::Hasher::new()));
    loop {
        let (file, mut hasher) = state.take().expect("put back after each step");
        let (file, hasher, done) = spawn_blocking(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let mut read = 0u64;
            let mut file = file;
            while read < HASH_STEP {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok::<_, io::Error>((file, hasher, true));
                }
                hasher.update(&buf[..n]);
                read += n as u64;
            }
            Ok((file, hasher, false))
        })
        .await?;
        if done {
            return Ok(hasher.finalize().to_hex().to_string());
        }
        state = Some((file, hasher));
    }
}
