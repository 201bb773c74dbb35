//! Properties of reading an image directory a client handed over (it may
//! come from anywhere through containerd's content store): lazarus.json,
//! descriptors.json and CRIU's stats file, arbitrary or mutated, are read or
//! refused with an InvalidArgument error naming the file; never a panic.

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::error::ErrorKind;

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        Just(Value::from(1)),
        Just(Value::from("soft")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(any::<String>(), 0..3)
}

/// A path that sometimes climbs out with "..".
fn cgroup_path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof!["[a-z0-9.]{0,6}", Just("..".to_string())], 0..4)
        .prop_map(|parts| format!("/{}", parts.join("/")))
}

/// Compressed page images, their names sometimes not page image names.
fn page_files() -> impl Strategy<Value = Vec<super::super::pages::CompressedFile>> {
    let name = prop_oneof![
        3 => "pages-[0-9]{1,3}\\.img",
        1 => "(\\.\\./)?[a-z./-]{0,12}",
    ];
    prop::collection::vec(
        (name, any::<u64>(), any::<u64>()).prop_map(|(name, raw_bytes, stored_bytes)| {
            super::super::pages::CompressedFile {
                name,
                raw_bytes,
                stored_bytes,
            }
        }),
        0..3,
    )
}

fn metadata() -> impl Strategy<Value = Metadata> {
    let mode = prop::sample::select(vec![
        CgroupsMode::Soft,
        CgroupsMode::Full,
        CgroupsMode::Strict,
        CgroupsMode::Ignore,
    ]);
    let options =
        (any::<[bool; 4]>(), mode, strings()).prop_map(|(b, cgroups_mode, ns)| DumpOptions {
            tcp_established: b[0],
            ext_unix_sk: b[1],
            shell_job: b[2],
            file_locks: b[3],
            cgroups_mode,
            empty_namespaces: ns,
        });
    let mounts = prop::collection::vec(
        (cgroup_path(), cgroup_path())
            .prop_map(|(mountpoint, root)| CgroupMount { mountpoint, root }),
        0..3,
    );
    let format = prop_oneof![3 => Just(FORMAT), 1 => any::<u32>()];
    let texts = (
        any::<String>(),
        any::<String>(),
        any::<String>(),
        any::<String>(),
    );
    (
        format,
        texts,
        options,
        strings(),
        strings(),
        mounts,
        any::<bool>(),
        page_files(),
    )
        .prop_map(
            |(
                format,
                t,
                options,
                external_mounts,
                external_namespaces,
                cgroup_mounts,
                terminal,
                compressed_pages,
            )| {
                Metadata {
                    format,
                    lazarus_version: t.0,
                    criu_version: t.1,
                    container_id: t.2,
                    options,
                    external_mounts,
                    external_namespaces,
                    cgroup_mounts,
                    cgroup_path: t.3,
                    terminal,
                    image: None,
                    rootfs_diff: terminal,
                    compressed_pages,
                }
            },
        )
}

thread_local! {
    /// A directory per test thread, reused by its cases (proptest runs them
    /// one after another on the test's thread): one per case is slow.
    static SCRATCH: tempfile::TempDir = tempfile::tempdir().unwrap();
}

fn scratch() -> PathBuf {
    SCRATCH.with(|d| d.path().to_owned())
}

/// Writes `file` into the scratch directory and runs `read` on it; any
/// error must be InvalidArgument and name the file.
fn read_back<T>(
    file: &str,
    content: &[u8],
    read: impl Fn(&Path) -> Result<T>,
) -> Result<Result<T>, TestCaseError> {
    let dir = scratch();
    std::fs::write(dir.join(file), content).unwrap();
    let got = read(&dir);
    if let Err(e) = &got {
        prop_assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{}", e);
        let msg = e.to_string();
        let named = msg.contains(&dir.join(file).display().to_string())
            || (file == METADATA_FILE && msg.contains("has format"));
        prop_assert!(named, "{} does not name {}", msg, file);
    }
    Ok(got)
}

fn climbs(p: &str) -> bool {
    p.split('/').any(|c| c == "..")
}

proptest! {
    #[test]
    fn arbitrary_metadata_bytes_are_refused_clearly(content in bytes()) {
        let _read_or_refused = read_back(METADATA_FILE, &content, Metadata::load)?;
    }

    /// A valid lazarus.json with one field replaced, dropped or added.
    #[test]
    fn mutated_metadata_json_is_read_or_refused_clearly(
        field in prop::sample::select(vec![
            "format", "lazarus_version", "criu_version", "container_id", "options",
            "external_mounts", "external_namespaces", "cgroup_mounts", "cgroup_path",
            "terminal", "compressed_pages", "extra",
        ]),
        replacement in prop::option::of(json()),
    ) {
        let mut v = serde_json::to_value(Metadata::new("c1", (4, 2, 1))).unwrap();
        match replacement {
            Some(r) => v[field] = r,
            None => drop(v.as_object_mut().unwrap().remove(field)),
        }
        let text = serde_json::to_vec(&v).unwrap();
        if let Ok(m) = read_back(METADATA_FILE, &text, Metadata::load)? {
            prop_assert_eq!(m.format, FORMAT);
        }
    }

    #[test]
    fn metadata_round_trips_unless_its_format_or_cgroup_paths_are_wrong(m in metadata()) {
        let dir = scratch();
        m.save(&dir).unwrap();
        let climbing = m.cgroup_mounts.iter().any(|c| climbs(&c.root) || climbs(&c.mountpoint));
        let bad_page_name = m
            .compressed_pages
            .iter()
            .any(|f| !super::super::pages::is_pages_image(&f.name) || f.name.contains('/'));
        match Metadata::load(&dir) {
            Ok(got) => {
                prop_assert!(m.format == FORMAT && !climbing && !bad_page_name);
                prop_assert_eq!(got, m);
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidArgument);
                let msg = e.to_string();
                if m.format != FORMAT {
                    let format = format!("has format {} but this Lazarus reads format 1", m.format);
                    prop_assert!(msg.contains(&format), "{}", msg);
                } else if climbing {
                    prop_assert!(msg.contains("cgroup_mounts") && msg.contains(".."), "{}", msg);
                } else {
                    prop_assert!(bad_page_name, "{}", msg);
                    prop_assert!(msg.contains("not a page image name"), "{}", msg);
                }
            }
        }
    }

    #[test]
    fn arbitrary_descriptors_are_read_or_refused_clearly(content in bytes()) {
        let _read_or_refused = read_back(DESCRIPTORS_FILE, &content, load_descriptors)?;
    }

    #[test]
    fn descriptors_round_trip(fds in prop::collection::vec(any::<String>(), 0..5)) {
        let text = serde_json::to_vec(&fds).unwrap();
        prop_assert_eq!(read_back(DESCRIPTORS_FILE, &text, load_descriptors)?.unwrap(), fds);
    }

    #[test]
    fn stats_of_arbitrary_bytes_are_none_or_numbers(
        head in bytes(),
        len in any::<u32>(),
        body in bytes(),
    ) {
        let path = scratch().join("stats-dump");
        // Raw noise, and noise behind a plausible header and entry size.
        let framed = [&head[..head.len().min(8)], &len.to_le_bytes(), &body].concat();
        for content in [head.clone(), framed] {
            std::fs::write(&path, &content).unwrap();
            let _ = read_stats(&path);
        }
    }

    #[test]
    fn stats_with_random_values_read_back(values in prop::collection::vec(any::<u64>(), 7)) {
        let mut dump = Empty::new();
        for (n, v) in (1u32..).zip(&values) {
            dump.special_fields.mut_unknown_fields().add_varint(n, *v);
        }
        let mut entry = Empty::new();
        entry
            .special_fields
            .mut_unknown_fields()
            .add_length_delimited(1, dump.write_to_bytes().unwrap());
        let body = entry.write_to_bytes().unwrap();
        let file = [&[0u8; 8][..], &(body.len() as u32).to_le_bytes(), &body].concat();
        let path = scratch().join("stats-dump");
        std::fs::write(&path, file).unwrap();
        let stats = read_stats(&path).unwrap();
        prop_assert_eq!(stats["freezing_time_us"], values[0]);
        prop_assert_eq!(stats["pages_written"], values[6]);
        prop_assert_eq!(stats.len(), 6);
    }
}
