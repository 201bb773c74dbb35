//! A container's process: run a command in it, checkpoint it, read what
//! it wrote.

use std::io::Write;
use std::time::Duration;

use super::{containers, out, secs, MARGIN};
use crate::connect::{call, request, Cri};
use crate::cri::{CheckpointContainerRequest, ExecSyncRequest};
use crate::error::{Error, Result};
use crate::logs::{self, Stream};

pub async fn exec(cri: &mut Cri, id: String, timeout: u64, cmd: Vec<String>) -> Result<u8> {
    let d = Duration::from_secs(timeout) + MARGIN;
    let message = ExecSyncRequest {
        container_id: id,
        cmd,
        timeout: secs(timeout),
    };
    let answer = call("ExecSync", d, cri.runtime.exec_sync(request(message, d))).await?;
    // Raw bytes, as the command wrote them; a closed pipe is not our error.
    let mut stdout = std::io::stdout();
    let _ = stdout
        .write_all(&answer.stdout)
        .and_then(|()| stdout.flush());
    let _ = std::io::stderr().write_all(&answer.stderr);
    // Exit statuses are 0-255 on Linux; anything else (a runtime's -1) is
    // reported as 255 rather than wrapped into a misleading small number.
    Ok(u8::try_from(answer.exit_code).unwrap_or(255))
}

pub async fn checkpoint(cri: &mut Cri, id: String, location: String, timeout: u64) -> Result<u8> {
    let d = Duration::from_secs(timeout) + MARGIN;
    let message = CheckpointContainerRequest {
        container_id: id,
        location: location.clone(),
        timeout: secs(timeout),
    };
    call(
        "CheckpointContainer",
        d,
        cri.runtime.checkpoint_container(request(message, d)),
    )
    .await?;
    out(&location);
    Ok(0)
}

/// Reads the log file the runtime names (so only on the runtime's host),
/// as crictl does: the container's stdout to ours, its stderr to ours.
pub async fn logs(cri: &mut Cri, id: String) -> Result<u8> {
    let (status, _) = containers::status(cri, &id).await?;
    let path = status.log_path;
    if path.is_empty() {
        return Err(Error::BadAnswer {
            rpc: "ContainerStatus",
            what: format!("container {id} has no log file (its pod has no --log-dir?)"),
        });
    }
    let content = std::fs::read(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let joined = logs::join(&content);
    for (line, why) in &joined.bad {
        eprintln!("cri-client logs: {path}:{line}: not a CRI log record: {why}");
    }
    let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
    for (stream, text) in &joined.lines {
        let sink: &mut dyn Write = match stream {
            Stream::Stdout => &mut stdout,
            Stream::Stderr => &mut stderr,
        };
        let written = sink.write_all(text).and_then(|()| sink.write_all(b"\n"));
        if written.is_err() {
            break; // a closed pipe: nobody reads any more
        }
    }
    let _ = stdout.flush();
    Ok(0)
}
