//! Properties of [`check_component`]: nothing it accepts can climb out of
//! or descend below the directory it is joined to, and everything
//! containerd's identifier rules accept is accepted. Of
//! [`check_identifier`] and [`check_name`]: they accept exactly what
//! containerd (resp. Docker or containerd) could, and nothing they accept
//! fails to become gRPC metadata or a path component.

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

/// containerd's rule read another way, to hold the check to: runs of
/// letters and digits joined by single separators
/// (`^[A-Za-z0-9]+([._-][A-Za-z0-9]+)*$`), at most 76 bytes.
fn containerd_accepts(value: &str) -> bool {
    value.len() <= MAX_IDENTIFIER
        && value
            .split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// What gRPC metadata (an HTTP/2 header value) may hold: visible ASCII,
/// space and tab.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

proptest! {
    #[test]
    fn check_identifier_is_containerds_rule(value in prop_oneof![containerd_id(), hostile()]) {
        let ok = check_identifier("containerd namespace", &value).is_ok();
        prop_assert_eq!(ok, containerd_accepts(&value), "{:?}", value);
        if ok {
            prop_assert!(is_header_value(&value));
            prop_assert!(check_component("containerd namespace", &value).is_ok());
        }
    }

    #[test]
    fn a_checked_name_is_a_safe_component(value in prop_oneof![containerd_id(), hostile()]) {
        match check_name("container name", &value) {
            Ok(()) => {
                prop_assert!(is_header_value(&value) && !value.starts_with('-'));
                prop_assert!(check_component("container name", &value).is_ok());
            }
            Err(e) => prop_assert!(e.to_string().starts_with("invalid container name "), "{}", e),
        }
    }

    #[test]
    fn every_containerd_id_is_accepted(id in containerd_id()) {
        prop_assert!(check_component("container id", &id).is_ok(), "{id:?}");
        prop_assert!(check_identifier("containerd namespace", &id).is_ok(), "{id:?}");
        prop_assert!(check_name("container name", &id).is_ok(), "{id:?}");
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

#[test]
fn namespaces_containerd_refuses_are_refused_with_the_reason() {
    for (value, why) in [
        ("", "must not be empty"),
        ("é", "only ASCII letters"),
        ("a\nb", "only ASCII letters"),
        ("a\u{7f}", "only ASCII letters"),
        ("a b", "only ASCII letters"),
        ("-a", "begin and end"),
        ("a.", "begin and end"),
        ("a..b", "two of"),
        ("a._b", "two of"),
    ] {
        let err = check_identifier("containerd namespace", value)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid containerd namespace ") && err.contains(why),
            "{value:?}: {err}"
        );
    }
    // Control characters are shown escaped, not written raw to a terminal.
    let err = check_identifier("containerd namespace", "a\nb").unwrap_err();
    assert!(err.to_string().contains("\"a\\nb\""), "{err}");
    let long = "a".repeat(MAX_IDENTIFIER + 1);
    assert!(check_identifier("containerd namespace", &long).is_err());
    for ok in [
        "default",
        "moby",
        "k8s.io",
        "a-b_c.d",
        &"a".repeat(MAX_IDENTIFIER),
    ] {
        check_identifier("containerd namespace", ok).unwrap();
    }
}

#[test]
fn names_neither_engine_could_take_are_refused() {
    for bad in ["", "-rm", ".x", "a/b", "../x", "é", "a b", "a\0"] {
        assert!(check_name("container name", bad).is_err(), "{bad:?}");
    }
    for ok in ["redis", "my_app_", "a..b", "x-1.2"] {
        check_name("container name", ok).unwrap();
    }
}
