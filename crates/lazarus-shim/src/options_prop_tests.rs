//! Properties of the option decoders on whatever a client puts in an Any:
//! never a panic; an error is INVALID_ARGUMENT and says which type or field;
//! valid messages give back exactly their fields.

use containerd_shim_protos::protobuf::MessageDyn;
use proptest::prelude::*;
use ttrpc::Code;

use super::*;

const ACCEPTED: [&str; 4] = [
    RUNC_V1_CHECKPOINT,
    LEGACY_CHECKPOINT,
    RUNC_V1_OPTIONS,
    LEGACY_CREATE_OPTIONS,
];

/// Accepted names bare or behind a host (as protobuf's Any::pack writes
/// them), near misses, and anything at all.
fn type_url() -> impl Strategy<Value = String> {
    let name = prop::sample::select(ACCEPTED.to_vec()).prop_map(str::to_string);
    prop_oneof![
        4 => name.clone(),
        2 => (name.clone(), "[a-z./]{0,24}").prop_map(|(n, host)| format!("{host}/{n}")),
        1 => name.prop_map(|n| format!("{n}x")),
        1 => Just(String::new()),
        1 => any::<String>(),
    ]
}

fn any_with(type_url: String, value: Vec<u8>) -> Any {
    Any {
        type_url,
        value,
        ..Default::default()
    }
}

fn encode(message: &dyn MessageDyn) -> Vec<u8> {
    message.write_to_bytes_dyn().unwrap()
}

/// Random bytes, or a real message of some accepted type with bytes changed.
fn value() -> impl Strategy<Value = Vec<u8>> {
    let valid = prop_oneof![
        Just(encode(&CheckpointOptions {
            exit: true,
            empty_namespaces: vec!["network".into()],
            cgroups_mode: "full".into(),
            image_path: "/img".into(),
            ..Default::default()
        })),
        Just(encode(&Options {
            criu_image_path: "/img".into(),
            criu_work_path: "/w".into(),
            ..Default::default()
        })),
    ];
    let mutated = (
        valid,
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    )
        .prop_map(|(mut bytes, changes)| {
            for (at, b) in changes {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            bytes
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..128), mutated]
}

/// INVALID_ARGUMENT, and the message points at the type, a field or a value.
fn refused_clearly(err: &Error, any: &Any) -> Result<(), TestCaseError> {
    prop_assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{}", err);
    let msg = err.to_string();
    let points = msg.contains(&format!("{:?}", any.type_url))
        || msg.contains("cgroups_mode")
        || msg.contains(" field ");
    prop_assert!(points, "{} names neither type nor field", msg);
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_options_decode_or_are_refused_clearly(url in type_url(), value in value()) {
        let any = any_with(url, value);
        let name = type_name(&any);
        match decode_checkpoint(Some(&any)) {
            Ok(_) => prop_assert!(
                (any.type_url.is_empty() && any.value.is_empty())
                    || name == RUNC_V1_CHECKPOINT
                    || name == LEGACY_CHECKPOINT
            ),
            Err(e) => refused_clearly(&e, &any)?,
        }
        match restore_paths(Some(&any)) {
            Ok(_) => prop_assert!(
                any.type_url.is_empty() || name == RUNC_V1_OPTIONS || name == LEGACY_CREATE_OPTIONS
            ),
            Err(e) => refused_clearly(&e, &any)?,
        }
    }

    #[test]
    fn checkpoint_options_round_trip(
        flags in any::<[bool; 5]>(),
        namespaces in prop::collection::vec(any::<String>(), 0..3),
        mode in prop_oneof![
            prop::sample::select(vec!["", "soft", "full", "strict", "ignore"]).prop_map(String::from),
            any::<String>(),
        ],
        paths in (any::<String>(), any::<String>()),
        legacy in any::<bool>(),
    ) {
        let o = CheckpointOptions {
            exit: flags[0],
            open_tcp: flags[1],
            external_unix_sockets: flags[2],
            terminal: flags[3],
            file_locks: flags[4],
            empty_namespaces: namespaces.clone(),
            cgroups_mode: mode.clone(),
            image_path: paths.0.clone(),
            work_path: paths.1.clone(),
            ..Default::default()
        };
        let url = if legacy { LEGACY_CHECKPOINT } else { RUNC_V1_CHECKPOINT };
        let any = any_with(url.into(), encode(&o));
        match decode_checkpoint(Some(&any)) {
            Ok(r) => {
                prop_assert_eq!(r.exit, Some(flags[0]));
                let got = [r.tcp_established, r.ext_unix_sk, r.shell_job, r.file_locks];
                prop_assert_eq!(got, [flags[1], flags[2], flags[3], flags[4]]);
                prop_assert_eq!(r.empty_namespaces, namespaces);
                prop_assert_eq!(r.cgroups_mode, CgroupsMode::parse(&mode).unwrap());
                // The legacy type's field 8 is the work path, 9 the image
                // path: its bytes read as runc.v1's have them swapped.
                let want = match legacy {
                    true => (paths.1.clone(), paths.0.clone()),
                    false => paths.clone(),
                };
                prop_assert_eq!((r.image_path, r.work_path), want);
            }
            Err(e) => {
                prop_assert!(CgroupsMode::parse(&mode).is_err(), "{}", e);
                prop_assert_eq!(e.code(), Code::INVALID_ARGUMENT);
                prop_assert!(e.to_string().contains(&format!("{mode:?}")), "{}", e);
            }
        }
    }

    #[test]
    fn restore_paths_round_trip(
        image in any::<String>(),
        work in any::<String>(),
        // The legacy message's varint fields (no_pivot_root, open_tcp,
        // external_unix_sockets, terminal, file_locks, no_new_keyring,
        // io_uid, io_gid); its string fields are checked as strings.
        others in prop::collection::vec(
            (prop::sample::select(vec![1u32, 2, 3, 4, 5, 8, 10, 11]), any::<u64>()),
            0..4,
        ),
    ) {
        let o = Options {
            criu_image_path: image.clone(),
            criu_work_path: work.clone(),
            ..Default::default()
        };
        let got = restore_paths(Some(&any_with(RUNC_V1_OPTIONS.into(), encode(&o)))).unwrap();
        prop_assert_eq!(got, (image.clone(), work.clone()));
        // The legacy message, with other (varint) fields around the paths.
        let mut legacy = Empty::new();
        let fields = legacy.special_fields.mut_unknown_fields();
        for (n, v) in others {
            fields.add_varint(n, v);
        }
        fields.add_length_delimited(LEGACY_CRIU_IMAGE_PATH, image.clone().into_bytes());
        fields.add_length_delimited(LEGACY_CRIU_WORK_PATH, work.clone().into_bytes());
        let any = any_with(LEGACY_CREATE_OPTIONS.into(), encode(&legacy));
        prop_assert_eq!(restore_paths(Some(&any)).unwrap(), (image, work));
    }
}

#[test]
fn a_legacy_path_that_is_not_a_string_is_named() {
    let mut legacy = Empty::new();
    let fields = legacy.special_fields.mut_unknown_fields();
    fields.add_varint(LEGACY_CRIU_IMAGE_PATH, 7);
    let any = any_with(LEGACY_CREATE_OPTIONS.into(), encode(&legacy));
    let err = restore_paths(Some(&any)).unwrap_err().to_string();
    assert!(
        err.contains("field 13 (criu_image_path) is not a string"),
        "{err}"
    );
    let mut legacy = Empty::new();
    let fields = legacy.special_fields.mut_unknown_fields();
    fields.add_length_delimited(LEGACY_CRIU_WORK_PATH, vec![0xff, b'/']);
    let any = any_with(LEGACY_CREATE_OPTIONS.into(), encode(&legacy));
    let err = restore_paths(Some(&any)).unwrap_err().to_string();
    assert!(
        err.contains("field 12 (criu_work_path) is not UTF-8"),
        "{err}"
    );
}
