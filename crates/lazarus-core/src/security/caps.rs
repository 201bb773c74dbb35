//! Linux capabilities by name and number, and the default set a container
//! gets from Docker and containerd when nobody asks for more.

/// Every capability, at its number (include/uapi/linux/capability.h).
const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The set Docker (moby's `caps.DefaultCapabilities`) and containerd
/// (`oci.populateDefaultUnixSpec`) give a container: the same 14.
pub const DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A set of capabilities as the kernel keeps it: bit N is capability N.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSet(pub u64);

impl CapSet {
    /// The set named by `names` ("CAP_NET_ADMIN" or Docker's "NET_ADMIN",
    /// any case; "ALL" is every capability). Unknown names are returned
    /// beside it: a newer kernel's capability is not silently dropped.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> (CapSet, Vec<String>) {
        let mut set = 0u64;
        let mut unknown = Vec::new();
        for name in names {
            let upper = name.to_ascii_uppercase();
            if upper == "ALL" || upper == "CAP_ALL" {
                set |= all_bits();
                continue;
            }
            let full = match upper.starts_with("CAP_") {
                true => upper,
                false => format!("CAP_{upper}"),
            };
            match NAMES.iter().position(|n| *n == full) {
                Some(bit) => set |= 1 << bit,
                None => unknown.push(name.to_string()),
            }
        }
        (CapSet(set), unknown)
    }

    /// The default set (see [`DEFAULT`]).
    pub fn default_set() -> CapSet {
        CapSet::from_names(DEFAULT).0
    }

    /// From CRIU's images: repeated u32 words, the low one first.
    pub fn from_words(words: &[u32]) -> CapSet {
        let word = |i: usize| u64::from(words.get(i).copied().unwrap_or(0));
        CapSet(word(0) | (word(1) << 32))
    }

    /// The capabilities in `self` that are not in `other`.
    pub fn minus(self, other: CapSet) -> CapSet {
        CapSet(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities' names, in number order; a bit no kernel names yet
    /// as `CAP_<number>`.
    pub fn names(self) -> Vec<String> {
        (0..64)
            .filter(|bit| self.0 & (1 << bit) != 0)
            .map(|bit| match NAMES.get(bit) {
                Some(n) => n.to_string(),
                None => format!("CAP_{bit}"),
            })
            .collect()
    }
}

fn all_bits() -> u64 {
    (1u64 << NAMES.len()) - 1
}

impl std::fmt::Display for CapSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.names().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_agree_with_the_kernel() {
        let (set, unknown) = CapSet::from_names(["CAP_CHOWN", "net_admin", "SYS_ADMIN"]);
        assert!(unknown.is_empty());
        assert_eq!(set.0, 1 | (1 << 12) | (1 << 21));
        assert_eq!(set.names(), ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]);
        let (all, _) = CapSet::from_names(["ALL"]);
        assert_eq!(all.0, 0x1ff_ffff_ffff);
        assert_eq!(CapSet::from_names(["CAP_FLY"]).1, ["CAP_FLY"]);
    }

    #[test]
    fn criu_words_are_low_word_first() {
        // /proc/<pid>/status of a privileged process: CapEff 000001ffffffffff.
        assert_eq!(CapSet::from_words(&[0xffff_ffff, 0x1ff]).0, 0x1ff_ffff_ffff);
        assert_eq!(CapSet::from_words(&[]).0, 0);
    }

    #[test]
    fn the_default_set_is_dockers_fourteen() {
        let d = CapSet::default_set();
        assert_eq!(d.names().len(), 14);
        assert_eq!(d.0, 0xa80425fb, "docker run's CapBnd is 00000000a80425fb");
        let extra = CapSet::from_names(["CAP_NET_ADMIN", "CAP_CHOWN"])
            .0
            .minus(d);
        assert_eq!(extra.names(), ["CAP_NET_ADMIN"]);
    }
}
