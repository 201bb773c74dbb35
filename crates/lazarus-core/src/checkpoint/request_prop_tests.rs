//! Properties of the annotation checks and the exit policy on arbitrary
//! annotation maps: a Lazarus annotation is accepted iff its key is known
//! and its value is exactly "true" or "false"; anything else is an
//! InvalidArgument error naming the key; other annotations are ignored.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::error::ErrorKind;

const DUMP_FLAGS: [&str; 4] = [
    TCP_ESTABLISHED_ANNOTATION,
    EXT_UNIX_SK_ANNOTATION,
    FILE_LOCKS_ANNOTATION,
    SHELL_JOB_ANNOTATION,
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(ANNOTATIONS.to_vec()).prop_map(str::to_string),
        1 => "[a-z-]{0,16}".prop_map(|s| format!("{}{s}", ANNOTATION_PREFIXES[0])),
        1 => any::<String>().prop_map(|s| format!("{}{s}", ANNOTATION_PREFIXES[0])),
        1 => prop::sample::select(ANNOTATIONS.to_vec()).prop_map(|k| k.to_uppercase()),
        1 => "[a-z.]{0,24}",
        1 => any::<String>(),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("true".to_string()),
        3 => Just("false".to_string()),
        1 => prop::sample::select(vec!["True", "FALSE", " true", "1", "yes", ""])
            .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn annotations() -> impl Strategy<Value = HashMap<String, String>> {
    prop::collection::hash_map(key(), value(), 0..6)
}

fn is_bool(v: &str) -> bool {
    v == "true" || v == "false"
}

/// The error names the key (and shows the bad value, if that is the fault).
fn assert_names_a_bad_key(
    err: &Error,
    ann: &HashMap<String, String>,
    bad: impl Fn(&str, &str) -> bool,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let msg = err.to_string();
    let named = ann
        .iter()
        .any(|(k, v)| bad(k, v) && msg.contains(k.as_str()));
    prop_assert!(named, "{} names none of the bad keys in {:?}", msg, ann);
    Ok(())
}

proptest! {
    #[test]
    fn validate_accepts_exactly_known_keys_with_boolean_values(ann in annotations()) {
        let bad = |k: &str, v: &str| {
            ANNOTATION_PREFIXES.iter().any(|p| k.starts_with(p)) && (!ANNOTATIONS.contains(&k) || !is_bool(v))
        };
        let expect_ok = !ann.iter().any(|(k, v)| bad(k, v));
        match validate_annotations(&ann) {
            Ok(()) => prop_assert!(expect_ok, "accepted {:?}", ann),
            Err(e) => {
                prop_assert!(!expect_ok, "refused valid {:?}: {}", ann, e);
                assert_names_a_bad_key(&e, &ann, bad)?;
            }
        }
    }

    #[test]
    fn apply_only_adds_the_flags_set_to_true(
        ann in annotations(),
        before in any::<[bool; 4]>(),
    ) {
        let mut r = CheckpointRequest {
            tcp_established: before[0],
            ext_unix_sk: before[1],
            file_locks: before[2],
            shell_job: before[3],
            ..Default::default()
        };
        let bad = |k: &str, v: &str| DUMP_FLAGS.contains(&k) && !is_bool(v);
        let expect_ok = !ann.iter().any(|(k, v)| bad(k, v));
        match r.apply_annotations(&ann) {
            Ok(()) => {
                prop_assert!(expect_ok, "accepted {:?}", ann);
                let after = [r.tcp_established, r.ext_unix_sk, r.file_locks, r.shell_job];
                for (i, key) in DUMP_FLAGS.iter().enumerate() {
                    let set = ann.get(*key).is_some_and(|v| v == "true");
                    prop_assert_eq!(after[i], before[i] || set, "{}", key);
                }
            }
            Err(e) => {
                prop_assert!(!expect_ok, "refused valid {:?}: {}", ann, e);
                assert_names_a_bad_key(&e, &ann, bad)?;
            }
        }
    }

    #[test]
    fn exit_policy_follows_its_order(
        ann in annotations(),
        requested in any::<Option<bool>>(),
        configured in prop::collection::hash_map("[a-z.]{0,8}", any::<bool>(), 0..3),
        namespace in prop_oneof![Just("moby".to_string()), "[a-z.]{0,8}", any::<String>()],
    ) {
        let request = CheckpointRequest { exit: requested, ..Default::default() };
        let got = should_exit(&request, &ann, &configured, &namespace);
        let from_annotation = ann.get(EXIT_ANNOTATION);
        match (requested, from_annotation) {
            (Some(exit), _) => prop_assert_eq!(got.unwrap(), exit),
            (None, Some(v)) if is_bool(v) => prop_assert_eq!(got.unwrap(), v == "true"),
            (None, Some(_)) => {
                let e = got.unwrap_err();
                prop_assert_eq!(e.kind(), ErrorKind::InvalidArgument);
                prop_assert!(e.to_string().contains(EXIT_ANNOTATION), "{}", e);
            }
            (None, None) => {
                let want = configured.get(&namespace).copied().unwrap_or(namespace == "moby");
                prop_assert_eq!(got.unwrap(), want);
            }
        }
    }
}
