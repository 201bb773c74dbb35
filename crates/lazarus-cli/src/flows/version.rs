//! `lazarus version`: Lazarus's version and that of the CRIU it would use,
//! asked over CRIU's RPC interface as the runtime asks it. The only CRIU
//! run by the CLI, waited for directly ([`DirectWait`]): this is an
//! ordinary process that reaps its own children.

use lazarus_core::config::Config;
use lazarus_core::criu::{Criu, DirectWait, SwrkCriu};

use crate::error::Result;
use crate::report::VersionReport;

/// Both versions; a CRIU that cannot be asked is reported as
/// "unavailable", with CRIU's error beside the report.
pub fn version() -> Result<(VersionReport, Option<lazarus_core::Error>)> {
    let config = Config::load()?;
    let criu = SwrkCriu {
        binary: config.criu_path.clone(),
        limits: config.criu_limits(),
        waiter: Box::new(DirectWait),
    };
    let (criu, error) = match criu.version() {
        Ok((a, b, c)) => (format!("{a}.{b}.{c}"), None),
        Err(e) => ("unavailable".to_string(), Some(e)),
    };
    let report = VersionReport {
        lazarus: env!("CARGO_PKG_VERSION").to_string(),
        criu,
    };
    Ok((report, error))
}
