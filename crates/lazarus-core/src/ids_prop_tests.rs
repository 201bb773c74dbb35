//! Properties of [`check_component`]: nothing it accepts can climb out of
//! or descend below the directory it is joined to, and everything
//! containerd's identifier rules accept is accepted.

use std::path::{Component, Path};

use proptest::prelude::*;

use super::*;
use crate::error::ErrorKind;

/// containerd's identifiers: `[A-Za-z0-9]+([._-][A-Za-z0-9]+)*`, 1..=76.
fn containerd_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,12}([._-][A-Za-z0-9]{1,12}){0,5}".prop_filter("76 at most", |s| s.len() <= 76)
}

/// Strings rich in what matters here: dots, slashes, NULs, other bytes.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("/".to_string()),
        Just("\0".to_string()),
        "[a-z0-9._-]{1,8}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn every_containerd_id_is_accepted(id in containerd_id()) {
        prop_assert!(check_component("container id", &id).is_ok(), "{id:?}");
    }

    #[test]
    fn an_accepted_name_is_exactly_one_normal_component(value in hostile()) {
        let base = Path::new("/run/lazarus/moby");
        match check_component("container id", &value) {
            Ok(()) => {
                prop_assert!(!value.contains('/') && !value.contains('\0'));
                prop_assert!(value != "." && value != ".." && !value.is_empty());
                prop_assert!(value.len() <= MAX_LEN);
                let joined = base.join(&value);
                prop_assert_eq!(joined.parent(), Some(base));
                let last = joined.components().next_back();
                prop_assert!(matches!(last, Some(Component::Normal(_))), "{joined:?}");
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidArgument);
                prop_assert!(e.to_string().starts_with("invalid container id "), "{e}");
            }
        }
    }
}

#[test]
fn traversal_and_odd_names_are_refused_with_the_reason() {
    for (value, why) in [
        ("", "must not be empty"),
        (".", "must not be . or .."),
        ("..", "must not be . or .."),
        ("../../etc", "must not contain /"),
        ("a/b", "must not contain /"),
        ("a\0b", "NUL"),
    ] {
        let err = check_component("exec id", value).unwrap_err().to_string();
        assert!(err.contains("exec id") && err.contains(why), "{err}");
    }
    let long = "a".repeat(MAX_LEN + 1);
    let err = check_component("namespace", &long).unwrap_err().to_string();
    assert!(
        err.contains("too long") && err.contains("201 bytes"),
        "{err}"
    );
    assert!(err.len() < 300, "a long name is cut in the message: {err}");
    check_component("namespace", &"a".repeat(MAX_LEN)).unwrap();
    for ok in ["moby", "k8s.io", "..a", "a..", "-", "é"] {
        check_component("namespace", ok).unwrap();
    }
}
