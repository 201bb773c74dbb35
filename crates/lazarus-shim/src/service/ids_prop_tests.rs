//! Create and Exec on hostile ids: an id that could leave a directory it is
//! joined to (`../../etc`, `a/b`, NUL, `..`) is INVALID_ARGUMENT before
//! anything reaches the runtime; every id containerd itself accepts works.

use containerd_shim_protos::protobuf::MessageField;
use proptest::prelude::*;

use super::*;

/// containerd's identifiers: `[A-Za-z0-9]+([._-][A-Za-z0-9]+)*`, 1..=76.
fn containerd_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,12}([._-][A-Za-z0-9]{1,12}){0,5}".prop_filter("76 at most", |s| s.len() <= 76)
}

fn hostile_id() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("..".to_string()),
        Just("/".to_string()),
        Just("\0".to_string()),
        "[a-z.]{0,4}",
    ];
    prop::collection::vec(piece, 1..6)
        .prop_map(|v| v.concat())
        .prop_filter("unsafe as a path component", |s| {
            s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0')
        })
}

fn exec_request(id: &str, exec_id: &str) -> ExecProcessRequest {
    let spec = serde_json::to_vec(&oci_spec::runtime::Process::default()).unwrap();
    ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        spec: MessageField::some(Any {
            value: spec,
            ..Default::default()
        }),
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hostile_ids_never_reach_the_runtime(id in hostile_id()) {
        let f = fixture();
        let err = f.create(&id).unwrap_err();
        prop_assert_eq!(err.code(), ttrpc::Code::INVALID_ARGUMENT);
        prop_assert!(err.to_string().contains("invalid container id"), "{}", err);
        f.run("c1");
        let err = f.service.exec(&exec_request("c1", &id)).unwrap_err();
        prop_assert_eq!(err.code(), ttrpc::Code::INVALID_ARGUMENT);
        prop_assert!(err.to_string().contains("invalid exec id"), "{}", err);
        let err = f.service.exec(&exec_request(&id, "e1")).unwrap_err();
        prop_assert_eq!(err.code(), ttrpc::Code::INVALID_ARGUMENT);
        prop_assert_eq!(f.runtime.calls(), ["create c1", "start c1"]);
    }

    #[test]
    fn containerd_ids_are_accepted(id in containerd_id(), exec_id in containerd_id()) {
        let f = fixture();
        f.run(&id);
        f.service.exec(&exec_request(&id, &exec_id)).unwrap();
        let start = StartRequest { id: id.clone(), exec_id, ..Default::default() };
        f.service.start(&start).unwrap();
        let calls = f.runtime.calls();
        prop_assert_eq!(calls.last(), Some(&format!("exec {id}")));
    }
}
