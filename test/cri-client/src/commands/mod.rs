//! One function per subcommand: build the request, call it under its
//! deadline, print the answer. Each returns the exit status (0, unless
//! `exec` passes on its command's).

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::connect::{call, request, Cri};
use crate::cri::{ImageSpec, ListImagesRequest, PullImageRequest, StatusRequest, VersionRequest};
use crate::error::Result;
use crate::json;

pub mod containers;
pub mod pods;
pub mod process;

/// Margin over a runtime-side timeout (exec, checkpoint) so the runtime's
/// own timeout error, which says more, arrives before ours.
const MARGIN: Duration = Duration::from_secs(10);

/// Prints a line to stdout; a closed pipe (`| head`) is not worth a panic.
fn out(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}

fn print_json(value: &Value) {
    out(&serde_json::to_string_pretty(value).expect("a Value always serialises"));
}

/// A number of seconds as the CRI's int64 fields want it.
fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub async fn version(cri: &mut Cri) -> Result<u8> {
    let d = cri.deadline;
    let message = VersionRequest {
        version: "v1".into(),
    };
    let answer = call("Version", d, cri.runtime.version(request(message, d))).await?;
    print_json(&json::version(&answer));
    Ok(0)
}

pub async fn handlers(cri: &mut Cri) -> Result<u8> {
    let d = cri.deadline;
    let message = StatusRequest { verbose: false };
    let answer = call("Status", d, cri.runtime.status(request(message, d))).await?;
    let list = answer.runtime_handlers.iter().map(json::handler).collect();
    print_json(&Value::Array(list));
    Ok(0)
}

pub async fn pull(cri: &mut Cri, image: String) -> Result<u8> {
    let d = cri.deadline;
    let spec = ImageSpec {
        image,
        ..Default::default()
    };
    let message = PullImageRequest {
        image: Some(spec),
        ..Default::default()
    };
    let answer = call("PullImage", d, cri.image.pull_image(request(message, d))).await?;
    out(&answer.image_ref);
    Ok(0)
}

pub async fn images(cri: &mut Cri) -> Result<u8> {
    let d = cri.deadline;
    let message = ListImagesRequest::default();
    let answer = call("ListImages", d, cri.image.list_images(request(message, d))).await?;
    let list = answer.images.iter().map(json::image).collect();
    print_json(&Value::Array(list));
    Ok(0)
}
