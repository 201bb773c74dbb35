//! CRIU's page servers, reachable by the migration's peer only.
//!
//! A CRIU page server (post-copy: the source's lazy dump, listening on
//! every IPv4 address; stop-copy: the receiver's `criu page-server`)
//! accepts the first connection to its port and serves only that one. A
//! host that connects first, even without the TLS certificate, aborts the
//! migration (safely: the source resumes, but nothing moves). So before a
//! page server listens, the side that starts it inserts one rule at the
//! top of this host's INPUT chain: a TCP connection to the page server's
//! port from any address but the peer's (the address the authenticated
//! migration connection came from or went to) is reset. The rule carries a
//! comment naming the migration (`lazarus-PID-START-PORT`: the process
//! that owns it, by pid and start time, and the port), so it is removed
//! when the migration ends: by its owner when the [`PortFilter`] is
//! dropped, by the owner's guard (`lazarus filter-guard`) if the owner is
//! killed, and by [`sweep_stale`] at the next `serve` or `migrate` start
//! for whatever outlived both.

use std::net::IpAddr;
use std::process::Command;

use crate::error::{Error, Result};
use crate::guard::Guard;

/// Every rule this module makes carries a comment with this prefix.
const TAG_PREFIX: &str = "lazarus-";
/// The chain the rules go into (connections to this host's own ports).
const CHAIN: &str = "INPUT";
/// How long iptables waits for the xtables lock another program holds.
const LOCK_WAIT_SECS: &str = "5";

/// iptables (IPv4) or ip6tables (IPv6): each has its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    const ALL: [Family; 2] = [Family::V4, Family::V6];

    fn program(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// Runs iptables or ip6tables: the seam the unit tests replace.
pub trait Tables {
    /// `program ARGS`'s standard output, or why it failed.
    fn run(&self, family: Family, args: &[String]) -> std::result::Result<String, String>;
}

/// The host's iptables and ip6tables.
pub struct HostTables;

impl Tables for HostTables {
    fn run(&self, family: Family, args: &[String]) -> std::result::Result<String, String> {
        let out = Command::new(family.program())
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", family.program()))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(format!(
            "{} {} failed ({}): {}",
            family.program(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What one page server's rule says: connections to `port` from anywhere
/// but `peer` are reset. `peer` None: from anywhere (a listener of the
/// other family than the peer's, which the peer never uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub family: Family,
    pub port: u16,
    pub peer: Option<IpAddr>,
    pub tag: String,
}

impl Rule {
    /// The rule for a page server listening on `port` in `family`, for the
    /// migration peer `peer` (an IPv4 peer seen through an IPv6 socket is
    /// an IPv4 address), owned by this process.
    pub fn new(family: Family, port: u16, peer: IpAddr) -> Result<Rule> {
        let peer = peer.to_canonical();
        let same_family = matches!(
            (family, peer),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        );
        Ok(Rule {
            family,
            port,
            peer: same_family.then_some(peer),
            tag: tag(std::process::id(), own_start()?, port),
        })
    }

    /// The match and target, as iptables takes them after the chain.
    fn spec(&self) -> Vec<String> {
        let mut v: Vec<String> = ["-p", "tcp", "--dport"].map(String::from).into();
        v.push(self.port.to_string());
        if let Some(peer) = self.peer {
            v.extend(["!".into(), "-s".into(), peer.to_string()]);
        }
        v.extend(
            [
                "-m",
                "comment",
                "--comment",
                &self.tag,
                "-j",
                "REJECT",
                "--reject-with",
                "tcp-reset",
            ]
            .map(String::from),
        );
        v
    }

    /// Inserted first in the chain, so that no earlier ACCEPT (loopback,
    /// established connections) lets a stranger through.
    pub fn insert_argv(&self) -> Vec<String> {
        let mut v = lock_wait();
        v.extend(["-I".into(), CHAIN.into(), "1".into()]);
        v.extend(self.spec());
        v
    }

    pub fn delete_argv(&self) -> Vec<String> {
        let mut v = lock_wait();
        v.extend(["-D".into(), CHAIN.into()]);
        v.extend(self.spec());
        v
    }
}

fn lock_wait() -> Vec<String> {
    vec!["-w".into(), LOCK_WAIT_SECS.into()]
}

/// The comment naming one migration's rule: its owner (pid and start
/// time, so a reused pid is not mistaken for it) and the port.
fn tag(pid: u32, start: u64, port: u16) -> String {
    format!("{TAG_PREFIX}{pid}-{start}-{port}")
}

/// The owner a tag names: (pid, start time), or None for a comment that
/// is not one of this module's tags.
fn owner_of(tag: &str) -> Option<(u32, u64)> {
    let mut parts = tag.strip_prefix(TAG_PREFIX)?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let _port: u16 = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((pid, start))
}

/// Process `pid`'s start time (clock ticks since boot, field 22 of its
/// stat), None if no such process runs.
fn start_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn own_start() -> Result<u64> {
    start_of(std::process::id()).ok_or_else(|| {
        Error::Refused("cannot read this process's start time in /proc/self/stat".into())
    })
}

/// A page server's rule, in place from [`PortFilter::insert`] until
/// dropped; a guard process removes it if this process is killed first.
pub struct PortFilter {
    rule: Rule,
    tables: Box<dyn Tables + Send>,
    guard: Option<Guard>,
}

impl PortFilter {
    /// Inserts `rule` with the host's iptables, under a guard. Fails (and
    /// the caller must not start the page server) when it cannot.
    pub fn insert(rule: Rule) -> Result<PortFilter> {
        let guard = Guard::start(
            &["filter-guard".into(), "--tag".into(), rule.tag.clone()],
            &format!("the page server's filter {}", rule.tag),
        )?;
        match PortFilter::insert_with(rule, Box::new(HostTables)) {
            Ok(mut filter) => {
                filter.guard = Some(guard);
                Ok(filter)
            }
            Err(e) => {
                // Nothing to undo.
                guard.dismiss();
                Err(e)
            }
        }
    }

    /// Inserts `rule` through `tables`.
    pub fn insert_with(rule: Rule, tables: Box<dyn Tables + Send>) -> Result<PortFilter> {
        tables.run(rule.family, &rule.insert_argv()).map_err(|e| {
            Error::Refused(format!(
                "cannot filter the page server's port {} to the migration peer ({e}): the \
                     page server would accept the first host to connect; the migration needs \
                     {} on this host (run as root)",
                rule.port,
                rule.family.program()
            ))
        })?;
        Ok(PortFilter {
            rule,
            tables,
            guard: None,
        })
    }
}

impl Drop for PortFilter {
    fn drop(&mut self) {
        if let Err(e) = self.tables.run(self.rule.family, &self.rule.delete_argv()) {
            // The guard, not dismissed, tries once more.
            eprintln!("lazarus: warning: removing the page server's filter: {e}");
            drop(self.guard.take());
            return;
        }
        if let Some(guard) = self.guard.take() {
            guard.dismiss();
        }
    }
}

/// The `-D` argv of each rule in `listing` (`iptables -S CHAIN`) whose
/// comment is one of this module's tags and `stale` says so of it.
fn matching_rules(listing: &str, stale: &dyn Fn(&str) -> bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in listing.lines() {
        // Comments are printed quoted by some iptables versions; ours hold
        // no spaces, so the words need no shell parsing.
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.trim_matches('"').to_string())
            .collect();
        if words.first().map(String::as_str) != Some("-A") {
            continue;
        }
        let comment = words
            .iter()
            .position(|w| w == "--comment")
            .and_then(|i| words.get(i + 1));
        match comment {
            Some(tag) if owner_of(tag).is_some() && stale(tag) => {
                let mut argv = lock_wait();
                argv.push("-D".into());
                argv.extend(words[1..].iter().cloned());
                out.push(argv);
            }
            _ => {}
        }
    }
    out
}

/// Removes, in both families, this host's rules that `stale` says of
/// their tag; returns how many. A family whose tool is missing or fails is
/// skipped (nothing of it can be there to remove, or it is said by the
/// next insert).
fn remove_where(tables: &dyn Tables, stale: &dyn Fn(&str) -> bool) -> usize {
    let mut removed = 0;
    for family in Family::ALL {
        let Ok(listing) = tables.run(family, &["-S".into(), CHAIN.into()]) else {
            continue;
        };
        for argv in matching_rules(&listing, stale) {
            match tables.run(family, &argv) {
                Ok(_) => removed += 1,
                Err(e) => eprintln!("lazarus: warning: removing a stale page server filter: {e}"),
            }
        }
    }
    removed
}

/// Whether the process a tag names has ended (or its pid is another's).
fn owner_gone(tag: &str) -> bool {
    owner_of(tag).is_some_and(|(pid, start)| start_of(pid) != Some(start))
}

/// At a `serve` or `migrate` start: removes the rules of migrations whose
/// process is gone (killed along with its guard).
pub fn sweep_stale() {
    sweep_stale_with(&HostTables, &owner_gone);
}

fn sweep_stale_with(tables: &dyn Tables, gone: &dyn Fn(&str) -> bool) {
    let removed = remove_where(tables, gone);
    if removed > 0 {
        eprintln!("lazarus: removed {removed} page server filter(s) left by an ended migration");
    }
}

/// `lazarus filter-guard`'s arguments (internal; started with each rule).
#[derive(clap::Args)]
pub struct FilterGuardArgs {
    /// The rule's comment
    #[arg(long)]
    pub tag: String,
}

/// `lazarus filter-guard`: waits to be dismissed; without that (its owner
/// died), removes the rule.
pub fn run_guard(args: &FilterGuardArgs) -> Result<()> {
    if crate::guard::dismissed() {
        return Ok(());
    }
    let removed = remove_where(&HostTables, &|t| t == args.tag);
    eprintln!(
        "lazarus filter-guard: the migration ended without removing its page server filter {}; \
         removed {removed} rule(s)",
        args.tag
    );
    Ok(())
}

#[cfg(test)]
mod tests;
