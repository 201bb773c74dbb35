//! A "host" network for a daemon set: a network namespace joined to this
//! one by a veth pair. A set made with `Setup::own_network` runs its
//! containerd and dockerd in it (so do their shims, CRIU and the
//! containers on the host's network), which makes it a second host as far
//! as any address is concerned: what crosses between it and this
//! namespace crosses the veth.

use crate::support::cmd::run;
use std::process::Command;

/// The namespace `ns-<set id>` behind the veth pair `lzmNa`/`lzmNb`
/// (10.213.N.1 on this side, 10.213.N.2 inside); deleted when dropped.
pub struct Netns {
    pub name: String,
    veth: String,
    /// The namespace's address.
    pub inside: String,
}

/// `ip ARGS`, which must work.
fn ip(args: &[&str]) {
    run(Command::new("ip").args(args)).ok();
}

/// `ip ARGS` in namespace `ns`, which must work.
fn ip_in(ns: &str, args: &[&str]) {
    let mut v = vec!["netns", "exec", ns, "ip"];
    v.extend(args);
    ip(&v);
}

/// The namespace's name for the daemon set `id` (the clean-up of a set
/// whose test died deletes it by this name).
pub fn netns_name(id: &str) -> String {
    format!("ns-{id}")
}

impl Netns {
    pub fn new(set_id: &str) -> Netns {
        // Distinct for every namespace this process makes (the tests run in
        // parallel), and per process (37 and 250 are coprime).
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = (std::process::id() + made * 37) % 250 + 1;
        let (veth, peer) = (format!("lzm{n}a"), format!("lzm{n}b"));
        let ns = Netns {
            name: netns_name(set_id),
            veth,
            inside: format!("10.213.{n}.2"),
        };
        let _ = run(Command::new("ip").args(["link", "del", &ns.veth]));
        let _ = run(Command::new("ip").args(["netns", "del", &ns.name]));
        let inside = |args: &[&str]| ip_in(&ns.name, args);
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link", "add", &ns.veth, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &ns.name]);
        ip(&["addr", "add", &format!("10.213.{n}.1/30"), "dev", &ns.veth]);
        ip(&["link", "set", &ns.veth, "up"]);
        inside(&["addr", "add", &format!("{}/30", ns.inside), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// This side of the veth pair.
    pub fn veth(&self) -> &str {
        &self.veth
    }

    /// Whether process `pid` runs in this namespace.
    pub fn holds(&self, pid: i32) -> bool {
        use std::os::unix::fs::MetadataExt;
        let ino = |p: String| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
        let ours = ino(self.path());
        ours.is_some() && ino(format!("/proc/{pid}/ns/net")) == ours
    }

    /// This side's address on the veth pair (10.213.N.1).
    #[allow(dead_code)] // for the migrate benchmark's raw CRIU paths
    pub fn outside(&self) -> String {
        let (net, _) = self.inside.rsplit_once('.').expect("an IPv4 address");
        format!("{net}.1")
    }

    /// The namespace's file, for `nsenter --net=`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Cuts the link: the host side of the veth pair goes down (no RST, no
    /// FIN: the peers only stop hearing each other).
    pub fn cut(&self) {
        ip(&["link", "set", &self.veth, "down"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the pair's end there, and with it
        // this one (once no process is left in it).
        let _ = run(Command::new("ip").args(["netns", "del", &self.name]));
        let _ = run(Command::new("ip").args(["link", "del", &self.veth]));
    }
}

/// One layer-2 segment (a bridge in this namespace, without an address)
/// that namespaces plug into, as hosts on one switch: what lets an address
/// move between hosts (a macvlan address, with the MAC Docker derives from
/// it). Deleted when dropped, after the namespaces plugged into it.
pub struct Segment {
    bridge: String,
    /// The first three octets of the segment's /24.
    pub prefix: String,
    plugged: std::sync::atomic::AtomicU32,
}

impl Segment {
    /// `prefix` is the first three octets of an unused /24.
    pub fn new(prefix: &str) -> Segment {
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bridge = format!("lzs{}x{made}", std::process::id());
        let _ = run(Command::new("ip").args(["link", "del", &bridge]));
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["link", "set", &bridge, "up"]);
        Segment {
            bridge,
            prefix: prefix.to_string(),
            plugged: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Plugs namespace `ns` in: a veth pair, its end there named `l2` with
    /// PREFIX.`host`/24; returns that address.
    pub fn plug(&self, ns: &Netns, host: u8) -> String {
        let n = self
            .plugged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (here, there) = (
            format!("{}p{n}", self.bridge),
            format!("{}q{n}", self.bridge),
        );
        let addr = format!("{}.{host}", self.prefix);
        let inside = |args: &[&str]| ip_in(&ns.name, args);
        ip(&["link", "add", &here, "type", "veth", "peer", "name", &there]);
        ip(&["link", "set", &here, "master", &self.bridge, "up"]);
        ip(&["link", "set", &there, "netns", &ns.name]);
        inside(&["link", "set", &there, "name", "l2"]);
        inside(&["addr", "add", &format!("{addr}/24"), "dev", "l2"]);
        inside(&["link", "set", "l2", "up"]);
        addr
    }
}

/// Deletes the segments of test processes that are gone (a run killed
/// before its Drop could): their bridges `lzs<pid>x<n>` and any of their
/// veth ends `lzs<pid>x<n>p<k>` still here.
pub fn purge_stale_segments() {
    let Ok(links) = std::fs::read_dir("/sys/class/net") else {
        return;
    };
    for link in links.flatten() {
        let name = link.file_name().to_string_lossy().into_owned();
        if crate::support::cleanup::owner_gone(&name, "lzs") {
            eprintln!("e2e: deleting stale segment {name}");
            let _ = run(Command::new("ip").args(["link", "del", &name]));
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["link", "del", &self.bridge]));
    }
}
