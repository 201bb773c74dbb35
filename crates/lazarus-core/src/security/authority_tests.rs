use serde_json::json;

use super::*;

/// `ctr run`'s spec, trimmed to what the check reads.
fn ctr_spec() -> Value {
    json!({
        "process": {
            "noNewPrivileges": true,
            "capabilities": {
                "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
                "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]
            }
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                           {"type": "mount"}, {"type": "network"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "resources": {"devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": true, "type": "c", "access": "m"},
                {"allow": true, "type": "c", "major": 136, "access": "rwm"}
            ]},
            "cgroupsPath": "/default/victim"
        }
    })
}

fn grants(items: &[Item]) -> Vec<Grant> {
    items.iter().map(|i| i.grant).collect()
}

#[test]
fn a_plain_ctr_spec_asks_for_nothing() {
    assert_eq!(of_oci_spec(&ctr_spec()), vec![]);
}

#[test]
fn every_kind_of_authority_in_a_spec_is_named() {
    let mut s = ctr_spec();
    s["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "id > /x"]}]});
    s["process"]["capabilities"]["permitted"] = json!(["CAP_SYS_ADMIN"]);
    s["process"]["noNewPrivileges"] = json!(false);
    s["linux"]["namespaces"] = json!([{"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
        {"type": "network", "path": "/proc/1/ns/net"}]);
    s["mounts"] = json!([{"destination": "/host", "type": "bind", "source": "/", "options": ["rbind"]},
        {"destination": "/d", "type": "ext4", "source": "/dev/vda"}]);
    s["linux"]["devices"] = json!([{"path": "/dev/vda", "type": "b", "major": 254, "minor": 0}]);
    s["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    s["linux"]["maskedPaths"] = json!([]);
    s["linux"]["sysctl"] = json!({"kernel.shmmax": "1"});
    let items = of_oci_spec(&s);
    let text: Vec<&str> = items.iter().map(|i| i.what.as_str()).collect();
    for want in [
        "createRuntime hook: /bin/sh (sh -c id > /x)",
        "capabilities beyond the default: CAP_SYS_ADMIN",
        "the host's pid namespace",
        "joins the network namespace at /proc/1/ns/net",
        "host path / at /host",
        "a \"ext4\" mount of /dev/vda at /d",
        "device /dev/vda (b 254:0)",
        "device access a *:* rwm",
        "no_new_privileges off",
        "paths visible that are masked by default: /proc/kcore, /proc/keys, /proc/timer_list",
        "sysctl kernel.shmmax=1",
    ] {
        assert!(text.contains(&want), "{want:?} not in {text:#?}");
    }
    for g in Grant::ALL.into_iter().filter(|g| *g != Grant::Privileged) {
        assert!(grants(&items).contains(&g), "{g:?}");
    }
}

#[test]
fn a_spec_without_masked_paths_has_them_unmasked() {
    let mut s = ctr_spec();
    s["linux"].as_object_mut().unwrap().remove("maskedPaths");
    assert_eq!(grants(&of_oci_spec(&s)), [Grant::SecurityOptions]);
}

#[test]
fn a_plain_docker_run_asks_for_nothing() {
    let body = json!({
        "Image": "busybox", "Cmd": ["sh"],
        "HostConfig": {"Binds": ["data:/data"], "NetworkMode": "bridge", "IpcMode": "private",
            "CgroupnsMode": "host",
            "CapAdd": null, "CapDrop": ["NET_RAW"], "SecurityOpt": null,
            "MaskedPaths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                            "/proc/timer_list"],
            "Mounts": [{"Type": "volume", "Source": "v", "Target": "/v"},
                       {"Type": "tmpfs", "Target": "/t"}],
            "CgroupParent": "", "Runtime": "lazarus"}
    });
    assert_eq!(of_docker(&body), vec![]);
}

#[test]
fn the_attackers_docker_request_is_named_item_by_item() {
    let body = json!({
        "HostConfig": {"Privileged": true, "Binds": ["/:/host"], "CapAdd": ["ALL"],
            "PidMode": "host", "NetworkMode": "container:victim",
            "SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined", "no-new-privileges"],
            "Devices": [{"PathOnHost": "/dev/kmsg"}], "VolumesFrom": ["db"],
            "Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/e"},
                       {"Type": "volume", "Source": "v", "Target": "/v",
                        "VolumeOptions": {"DriverConfig": {"Options": {"o": "bind", "device": "/"}}}}],
            "Sysctls": {"net.ipv4.ip_forward": "1"}}
    });
    let items = of_docker(&body);
    let text: Vec<&str> = items.iter().map(|i| i.what.as_str()).collect();
    for want in [
        "privileged mode",
        "host path /:/host",
        "the host's pid namespace",
        "joins container victim's network namespace",
        "seccomp disabled",
        "AppArmor profile unconfined",
        "device /dev/kmsg",
        "the volumes of container db",
        "host path /etc at /e",
        "sysctl net.ipv4.ip_forward=1",
    ] {
        assert!(text.contains(&want), "{want:?} not in {text:#?}");
    }
    assert!(
        text.iter()
            .any(|t| t.starts_with("capabilities beyond the default: ")
                && t.contains("CAP_SYS_ADMIN"))
    );
    assert!(text
        .iter()
        .any(|t| t.starts_with("volume v at /v with driver options")));
    assert!(!text.iter().any(|t| t.contains("no-new-privileges")));
}

#[test]
fn garbage_is_read_as_nothing_rather_than_a_panic() {
    for v in [
        json!(null),
        json!(7),
        json!("x"),
        json!({"HostConfig": 3, "hooks": [1]}),
        json!({"process": {"capabilities": {"bounding": [1, null]}}, "linux": {"namespaces": 5}}),
    ] {
        let _ = of_docker(&v);
        let _ = of_oci_spec(&v);
    }
}

mod props {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::super::*;
    use crate::security::ImportPolicy;

    /// Any JSON, nested a few levels, with the keys the checks read among
    /// the random ones so that they meet every shape there.
    fn json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("hooks".to_string()),
            Just("HostConfig".to_string()),
            Just("process".to_string()),
            Just("linux".to_string()),
            Just("capabilities".to_string()),
            Just("namespaces".to_string()),
            Just("mounts".to_string()),
            Just("Binds".to_string()),
            Just("Mounts".to_string()),
            Just("SecurityOpt".to_string()),
            Just("devices".to_string()),
            Just("resources".to_string()),
            Just("type".to_string()),
            Just("path".to_string()),
            "[a-zA-Z]{1,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever an archive holds, reading its authority never panics,
        /// and the default policy refuses exactly when there is an item.
        #[test]
        fn any_configuration_is_read_without_a_panic(v in json()) {
            for items in [of_docker(&v), of_oci_spec(&v)] {
                let refused = ImportPolicy::default().check("a", &items).is_err();
                prop_assert_eq!(refused, !items.is_empty());
                prop_assert!(ImportPolicy::trust_all().check("a", &items).is_ok());
            }
        }
    }
}
