//! Low-level reading of CRIU image files.
//!
//! A CRIU image is a u32 head magic (IMG_COMMON, or IMG_SERVICE for stats
//! files), the image's own u32 magic, then entries: a u32 length and that
//! many bytes of protobuf. inventory.img alone has no head magic, and so do
//! all images of the old v1 format. Integers are host-endian, as CRIU writes
//! its structs raw; every supported host is little-endian.
//!
//! The entries are decoded without CRIU's .proto files (no protoc, no
//! build.rs): each one is parsed as the empty message, which keeps all of
//! its fields as protobuf "unknown fields", read here by field number. The
//! numbers come from CRIU's images/*.proto and are named at each use.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::well_known_types::empty::Empty;
use protobuf::{Message, UnknownValueRef};

/// Magic numbers from CRIU's criu/include/magic.h.
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
pub const INVENTORY_MAGIC: u32 = 0x5831_3116;
pub const PSTREE_MAGIC: u32 = 0x5027_3030;
pub const CORE_MAGIC: u32 = 0x5505_3847;
pub const FILES_MAGIC: u32 = 0x5630_3138;
pub const INETSK_MAGIC: u32 = 0x5644_3851;
pub const MNTS_MAGIC: u32 = 0x5556_3928;
pub const STATS_MAGIC: u32 = 0x5709_3306;
pub const PAGEMAP_MAGIC: u32 = 0x5608_4025;
pub const MM_MAGIC: u32 = 0x5749_2820;

/// What went wrong, always naming the file (or directory) concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: not a CRIU image directory ({missing} is missing)", dir.display())]
    NotImageDir { dir: PathBuf, missing: &'static str },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    Malformed { path: PathBuf, what: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn malformed(path: &Path, what: impl Into<String>) -> Error {
    Error::Malformed {
        path: path.to_owned(),
        what: what.into(),
    }
}

pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// One decoded protobuf message (an image entry or a field nested in one).
/// It keeps its file's path so that every accessor's error can name it.
#[derive(Clone, Debug)]
pub struct Entry {
    msg: Empty,
    path: Arc<Path>,
}

impl Entry {
    fn parse(path: &Arc<Path>, bytes: &[u8], what: &str) -> Result<Entry> {
        let msg = Empty::parse_from_bytes(bytes)
            .map_err(|e| malformed(path, format!("{what}: bad protobuf: {e}")))?;
        Ok(Entry {
            msg,
            path: path.clone(),
        })
    }

    fn get(&self, n: u32) -> Option<UnknownValueRef<'_>> {
        self.msg.special_fields.unknown_fields().get(n)
    }

    /// An error about this entry's contents, naming its file.
    pub fn error(&self, what: impl Into<String>) -> Error {
        malformed(&self.path, what)
    }

    fn wrong_type(&self, n: u32, name: &str, want: &str) -> Error {
        self.error(format!("field {n} ({name}) is not {want}"))
    }

    /// An optional integer field (any varint type: uint32/64, bool, enum).
    pub fn varint(&self, n: u32, name: &str) -> Result<Option<u64>> {
        match self.get(n) {
            None => Ok(None),
            Some(UnknownValueRef::Varint(v)) => Ok(Some(v)),
            Some(_) => Err(self.wrong_type(n, name, "a varint")),
        }
    }

    /// A required uint32 field (CRIU's pids, ports, states, enums).
    pub fn u32(&self, n: u32, name: &str) -> Result<u32> {
        let v = self
            .varint(n, name)?
            .ok_or_else(|| self.error(format!("field {n} ({name}) is missing")))?;
        u32::try_from(v).map_err(|_| self.wrong_type(n, name, "a uint32"))
    }

    /// An optional string field; invalid UTF-8 (a comm may hold any bytes)
    /// is replaced rather than refused, as this is for display.
    pub fn string(&self, n: u32, name: &str) -> Result<Option<String>> {
        match self.get(n) {
            None => Ok(None),
            Some(UnknownValueRef::LengthDelimited(b)) => {
                Ok(Some(String::from_utf8_lossy(b).into_owned()))
            }
            Some(_) => Err(self.wrong_type(n, name, "a string")),
        }
    }

    /// An optional embedded message.
    pub fn message(&self, n: u32, name: &str) -> Result<Option<Entry>> {
        match self.get(n) {
            None => Ok(None),
            Some(UnknownValueRef::LengthDelimited(b)) => {
                Entry::parse(&self.path, b, &format!("field {n} ({name})")).map(Some)
            }
            Some(_) => Err(self.wrong_type(n, name, "a message")),
        }
    }

    /// A repeated embedded message, in order.
    pub fn messages(&self, n: u32, name: &str) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for (num, value) in self.msg.special_fields.unknown_fields() {
            if num != n {
                continue;
            }
            match value {
                UnknownValueRef::LengthDelimited(b) => {
                    out.push(Entry::parse(&self.path, b, &format!("field {n} ({name})"))?)
                }
                _ => return Err(self.wrong_type(n, name, "a message list")),
            }
        }
        Ok(out)
    }

    /// Sets integer field `n` to `v` (replacing what it held), for an
    /// image rewritten field by field (an incremental dump made whole:
    /// `checkpoint::incremental`). Every other field is kept as it was.
    pub fn set_varint(&mut self, n: u32, v: u64) {
        let fields = self.msg.special_fields.mut_unknown_fields();
        fields.remove(n);
        fields.add_varint(n, v);
    }

    /// Removes field `n`, if it is there.
    pub fn remove(&mut self, n: u32) {
        self.msg.special_fields.mut_unknown_fields().remove(n);
    }

    /// A repeated uint32 field, in order. CRIU's proto2 files do not pack
    /// them, but a packed encoding is accepted too, as protobuf requires.
    pub fn repeated_u32(&self, n: u32, name: &str) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        // Unknown fields are grouped by wire type, so the values of one
        // field and one wire type keep their order.
        for (num, value) in self.msg.special_fields.unknown_fields() {
            if num != n {
                continue;
            }
            match value {
                UnknownValueRef::Varint(v) => out.push(v),
                UnknownValueRef::LengthDelimited(mut b) => {
                    while !b.is_empty() {
                        let (v, used) = read_varint(b)
                            .ok_or_else(|| self.wrong_type(n, name, "packed varints"))?;
                        out.push(v);
                        b = &b[used..];
                    }
                }
                _ => return Err(self.wrong_type(n, name, "a uint32 list")),
            }
        }
        out.into_iter()
            .map(|v| u32::try_from(v).map_err(|_| self.wrong_type(n, name, "a uint32 list")))
            .collect()
    }
}

/// Decodes one protobuf varint, returning it and the bytes it took.
fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Reads every entry of a CRIU image whose own magic is `magic`.
pub fn read_image(path: &Path, magic: u32) -> Result<Vec<Entry>> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    decode_image(path, &bytes, magic)
}

/// Like [`read_image`], but `Ok(None)` when the file does not exist, for
/// images CRIU writes only when there is something to put in them.
pub fn read_optional_image(path: &Path, magic: u32) -> Result<Option<Vec<Entry>>> {
    match std::fs::read(path) {
        Ok(bytes) => decode_image(path, &bytes, magic).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path, e)),
    }
}

/// Decodes an image already in memory; `path` is only for error messages.
pub fn decode_image(path: &Path, bytes: &[u8], magic: u32) -> Result<Vec<Entry>> {
    let first = read_u32(bytes, 0).ok_or_else(|| malformed(path, "too short for a magic"))?;
    let mut at = if first == magic {
        4 // inventory.img, or a v1 image without a head magic
    } else if first == IMG_COMMON_MAGIC || first == IMG_SERVICE_MAGIC {
        match read_u32(bytes, 4) {
            Some(m) if m == magic => 8,
            Some(m) => {
                return Err(malformed(
                    path,
                    format!("image magic is {m:#010x}, expected {magic:#010x}"),
                ))
            }
            None => return Err(malformed(path, "truncated after the head magic")),
        }
    } else {
        return Err(malformed(
            path,
            format!("{first:#010x} is not a CRIU magic"),
        ));
    };
    let path: Arc<Path> = Arc::from(path);
    let mut entries = Vec::new();
    while at < bytes.len() {
        let len = read_u32(bytes, at)
            .ok_or_else(|| malformed(&path, format!("truncated entry size at byte {at}")))?
            as usize;
        let body = bytes
            .get(at + 4..(at + 4).saturating_add(len))
            .ok_or_else(|| {
                malformed(
                    &path,
                    format!("entry at byte {at} claims {len} bytes, past the end of the file"),
                )
            })?;
        entries.push(Entry::parse(&path, body, &format!("entry at byte {at}"))?);
        at += 4 + len;
    }
    Ok(entries)
}

/// PagemapEntry.flags (criu/include/pagemap.h): the pages are in the
/// parent image, left to a page server (lazy), in this image's pages.
pub const PE_PARENT: u64 = 1 << 0;
pub const PE_LAZY: u64 = 1 << 1;
pub const PE_PRESENT: u64 = 1 << 2;

/// One PagemapEntry: `pages` pages from `vaddr`, where `flags` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagemapEntry {
    pub vaddr: u64,
    pub pages: u64,
    pub flags: u64,
}

impl PagemapEntry {
    /// PagemapEntry (images/pagemap.proto): vaddr=1, compat_nr_pages=2
    /// (nr_pages=5 in newer CRIUs), in_parent=3 (older CRIUs, before
    /// flags), flags=4. An entry of an image without flags was in its
    /// parent when in_parent says so, else present.
    pub fn of(e: &Entry) -> Result<PagemapEntry> {
        let pages = match e.varint(5, "nr_pages")? {
            Some(n) => n,
            None => e.varint(2, "compat_nr_pages")?.unwrap_or(0),
        };
        let flags = match e.varint(4, "flags")? {
            Some(f) => f,
            None if e.varint(3, "in_parent")? == Some(1) => PE_PARENT,
            None => PE_PRESENT,
        };
        Ok(PagemapEntry {
            vaddr: e.varint(1, "vaddr")?.unwrap_or(0),
            pages,
            flags,
        })
    }
}

/// Encodes `entries` as a CRIU image whose own magic is `magic`, under
/// the IMG_COMMON head magic (what [`decode_image`] reads back).
pub fn encode_image(magic: u32, entries: &[Entry]) -> Vec<u8> {
    let mut out: Vec<u8> = [IMG_COMMON_MAGIC, magic]
        .into_iter()
        .flat_map(u32::to_le_bytes)
        .collect();
    for e in entries {
        let body = e
            .msg
            .write_to_bytes()
            .expect("an entry of unknown fields always encodes");
        out.extend((body.len() as u32).to_le_bytes());
        out.extend(body);
    }
    out
}

/// An inet socket's address and port as `addr:port` (`[addr]:port` for
/// IPv6), from InetSkEntry's src_addr/dst_addr words. CRIU copies the
/// kernel's network-order words as host-endian u32s, so on a little-endian
/// host the bytes of each word are the octets in order. None when the
/// word count does not fit the family.
pub fn inet_endpoint(family: u32, words: &[u32], port: u32) -> Option<String> {
    const AF_INET: u32 = 2;
    const AF_INET6: u32 = 10;
    let octets: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    match family {
        AF_INET => Some(format!(
            "{}:{port}",
            Ipv4Addr::from(<[u8; 4]>::try_from(octets).ok()?)
        )),
        AF_INET6 => Some(format!(
            "[{}]:{port}",
            Ipv6Addr::from(<[u8; 16]>::try_from(octets).ok()?)
        )),
        _ => None,
    }
}

/// InetSkEntry's state is the kernel's TCP state (include/net/tcp_states.h),
/// named here as ss names it.
pub fn tcp_state_name(state: u32) -> String {
    const NAMES: &str = "ESTABLISHED SYN_SENT SYN_RECV FIN_WAIT1 FIN_WAIT2 TIME_WAIT CLOSE \
                         CLOSE_WAIT LAST_ACK LISTEN CLOSING NEW_SYN_RECV";
    let name = (state as usize)
        .checked_sub(1)
        .and_then(|i| NAMES.split(' ').nth(i));
    name.map_or_else(|| format!("UNKNOWN({state})"), str::to_string)
}

/// MntEntry's fstype, CRIU's own enum in images/mnt.proto (20-22 are
/// reserved). It is AUTO (16) for the many types the enum lacks, and then
/// MntEntry's fsname holds the name.
pub fn fstype_name(code: u32) -> String {
    const NAMES: &str = "unsupported proc sysfs devtmpfs binfmt_misc tmpfs devpts simfs \
                         pstore securityfs fusectl debugfs cgroup aufs mqueue fuse auto \
                         overlay autofs tracefs - - - cgroup2";
    match NAMES.split(' ').nth(code as usize) {
        Some(name) if name != "-" => name.to_string(),
        _ => format!("fstype {code}"),
    }
}

/// A damaged image is the request's input at fault; an unreadable one is
/// this host's.
impl From<Error> for crate::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io { path, source } => crate::Error::Io {
                context: format!("read {}", path.display()),
                source,
            },
            other => crate::Error::InvalidArgument(other.to_string()),
        }
    }
}

#[cfg(test)]
#[path = "images_tests.rs"]
pub(crate) mod tests;
