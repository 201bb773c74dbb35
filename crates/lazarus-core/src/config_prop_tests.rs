//! Properties of [`Config::from_file`] on whatever an admin (or a broken
//! deployment) may leave at the config path: never a panic; a config or an
//! InvalidArgument error naming the file; valid settings read back exactly.

use proptest::prelude::*;

use super::*;
use crate::error::ErrorKind;

/// Lines that look like the config: known and unknown keys, values of the
/// right and the wrong type, table headers, and noise.
fn tomlish() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("root".to_string()),
        Just("log_level".to_string()),
        Just("criu_path".to_string()),
        Just("criu_timeout_seconds".to_string()),
        Just("criu_log_max_mib".to_string()),
        Just("moby".to_string()),
        "[a-z_]{1,12}",
    ];
    let value = prop_oneof![
        "\"[ -~]{0,16}\"",
        any::<i64>().prop_map(|n| n.to_string()),
        Just("true".to_string()),
        Just("[1, \"x\"]".to_string()),
        Just("{ a = 1 }".to_string()),
        "[ -~]{0,12}",
    ];
    let line = prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        Just("[checkpoint_exit]".to_string()),
        Just("[[checkpoint_exit]]".to_string()),
        Just("[other]".to_string()),
        "[ -~]{0,20}",
        any::<String>(),
    ];
    prop::collection::vec(line, 0..8).prop_map(|l| l.join("\n"))
}

/// A non-negative TOML integer, often at the edges where arithmetic on it
/// overflows (TOML integers are i64).
fn setting() -> impl Strategy<Value = i64> {
    prop_oneof![
        0..=i64::MAX,
        0..100_000i64,
        (i64::MAX - 1000)..=i64::MAX,
        Just(i64::MAX)
    ]
}

thread_local! {
    /// A directory per test thread, reused by its cases (proptest runs them
    /// one after another on the test's thread): one per case is slow.
    static SCRATCH: tempfile::TempDir = tempfile::tempdir().unwrap();
}

fn config_path() -> PathBuf {
    SCRATCH.with(|d| d.path().join("config.toml"))
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let path = config_path();
    std::fs::write(&path, bytes).unwrap();
    if let Err(e) = Config::from_file(&path) {
        prop_assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{}", e);
        let msg = e.to_string();
        let named = format!("invalid Lazarus config {}", path.display());
        prop_assert!(msg.starts_with(&named), "{}", msg);
    }
    Ok(())
}

proptest! {
    #[test]
    fn tomlish_text_is_a_config_or_an_error_naming_the_file(text in tomlish()) {
        check(text.as_bytes())?;
    }

    #[test]
    fn arbitrary_bytes_are_a_config_or_an_error_naming_the_file(
        bytes in prop::collection::vec(any::<u8>(), 0..256)
    ) {
        check(&bytes)?;
    }

    #[test]
    fn valid_settings_read_back_exactly(
        root in any::<String>(),
        work_root in any::<String>(),
        log_level in any::<String>(),
        criu_path in any::<String>(),
        exit in prop::collection::hash_map(any::<String>(), any::<bool>(), 0..4),
        timeout in setting(),
        log_max in setting(),
        compress_pages in any::<bool>(),
        receive_root in any::<String>(),
        memory_root in any::<String>(),
        store_root in any::<String>(),
        store_max_gib in setting(),
        store_checkpoints in any::<bool>(),
    ) {
        let mut table = toml::Table::new();
        table.insert("root".into(), root.clone().into());
        table.insert("work_root".into(), work_root.clone().into());
        table.insert("log_level".into(), log_level.clone().into());
        table.insert("criu_path".into(), criu_path.clone().into());
        table.insert("criu_timeout_seconds".into(), timeout.into());
        table.insert("criu_log_max_mib".into(), log_max.into());
        table.insert("compress_pages".into(), compress_pages.into());
        table.insert("receive_root".into(), receive_root.clone().into());
        table.insert("memory_root".into(), memory_root.clone().into());
        table.insert("store_root".into(), store_root.clone().into());
        table.insert("store_max_gib".into(), store_max_gib.into());
        let docker_checkpoints = match store_checkpoints {
            true => crate::config::DockerCheckpoints::Store,
            false => crate::config::DockerCheckpoints::Archive,
        };
        let spelled = if store_checkpoints { "store" } else { "archive" };
        table.insert("docker_checkpoints".into(), spelled.into());
        let exits: toml::Table = exit.iter().map(|(k, v)| (k.clone(), (*v).into())).collect();
        table.insert("checkpoint_exit".into(), exits.into());
        let path = config_path();
        std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
        let want = Config {
            root: root.into(),
            log_level,
            criu_path: criu_path.into(),
            checkpoint_exit: exit,
            criu_timeout_seconds: timeout as u64,
            criu_log_max_mib: log_max as u64,
            work_root: work_root.into(),
            compress_pages,
            receive_root: receive_root.into(),
            memory_root: memory_root.into(),
            store_root: store_root.into(),
            store_max_gib: store_max_gib as u64,
            docker_checkpoints,
            import: Default::default(),
        };
        prop_assert_eq!(Config::from_file(&path).unwrap(), want.clone());
        // Whatever the values, the limits stay usable: no zero timeout, no
        // byte count wrapped to nothing, a deadline that can be computed.
        let limits = want.criu_limits();
        prop_assert!(limits.timeout.as_secs() >= 1);
        prop_assert!(limits.log_max_bytes >= want.criu_log_max_mib.max(1));
        let _deadline = std::time::Instant::now() + limits.timeout;
    }
}

#[test]
fn text_that_is_not_utf8_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, b"root = \"/x\xff\"\n").unwrap();
    let err = Config::from_file(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("not UTF-8"), "{err}");
}
