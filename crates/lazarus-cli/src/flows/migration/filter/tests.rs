use super::*;
use std::sync::{Arc, Mutex};

/// One call: the family's tool and its arguments.
type Call = (Family, Vec<String>);

/// A stand-in for iptables: records every call, answers `-S` with a
/// listing per family and fails what `fail` names.
#[derive(Clone, Default)]
struct Fake {
    calls: Arc<Mutex<Vec<Call>>>,
    v4: String,
    v6: String,
    fail: Option<&'static str>,
}

impl Tables for Fake {
    fn run(&self, family: Family, args: &[String]) -> std::result::Result<String, String> {
        self.calls.lock().unwrap().push((family, args.to_vec()));
        if self.fail.is_some_and(|f| args.iter().any(|a| a == f)) {
            return Err("iptables: not found".into());
        }
        Ok(match (family, args.first().map(String::as_str)) {
            (Family::V4, Some("-S")) => self.v4.clone(),
            (Family::V6, Some("-S")) => self.v6.clone(),
            _ => String::new(),
        })
    }
}

impl Fake {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn rule(family: Family, port: u16, peer: &str) -> Rule {
    Rule::new(family, port, peer.parse().unwrap()).unwrap()
}

#[test]
fn the_rule_resets_every_source_but_the_peer_first_in_input() {
    let r = rule(Family::V4, 40123, "10.0.0.2");
    let tag = format!(
        "lazarus-{}-{}-40123",
        std::process::id(),
        own_start().unwrap()
    );
    assert_eq!(r.tag, tag);
    assert_eq!(
        r.insert_argv(),
        words(&format!(
            "-w 5 -I INPUT 1 -p tcp --dport 40123 ! -s 10.0.0.2 -m comment --comment {tag} \
             -j REJECT --reject-with tcp-reset"
        ))
    );
    assert_eq!(
        r.delete_argv(),
        words(&format!(
            "-w 5 -D INPUT -p tcp --dport 40123 ! -s 10.0.0.2 -m comment --comment {tag} \
             -j REJECT --reject-with tcp-reset"
        ))
    );
}

#[test]
fn an_ipv6_peer_gets_an_ipv6_rule_and_a_mapped_ipv4_peer_an_ipv4_one() {
    let r = rule(Family::V6, 9, "fd00::2");
    assert_eq!(r.peer, Some("fd00::2".parse().unwrap()));
    assert!(r.insert_argv().join(" ").contains("! -s fd00::2 "));
    let mapped = rule(Family::V4, 9, "::ffff:10.0.0.2");
    assert_eq!(mapped.peer, Some("10.0.0.2".parse().unwrap()));
}

#[test]
fn a_listener_of_the_other_family_than_the_peer_is_closed_to_everyone() {
    // Post-copy's lazy page server listens on every IPv4 address whatever
    // the peer's family: with an IPv6 peer, no IPv4 source is let through.
    let r = rule(Family::V4, 9, "fd00::2");
    assert_eq!(r.peer, None);
    let argv = r.insert_argv();
    assert!(!argv.iter().any(|a| a == "-s" || a == "!"), "{argv:?}");
    assert!(argv.iter().any(|a| a == "REJECT"), "{argv:?}");
}

#[test]
fn a_local_peer_is_let_through_loopback_and_no_one_else() {
    let r = rule(Family::V4, 9, "127.0.0.1");
    assert!(r.insert_argv().join(" ").contains("! -s 127.0.0.1 "));
}

#[test]
fn insert_and_drop_run_the_matching_pair() {
    let fake = Fake::default();
    let r = rule(Family::V4, 7000, "10.0.0.2");
    let filter = PortFilter::insert_with(r.clone(), Box::new(fake.clone())).unwrap();
    assert_eq!(fake.calls(), vec![(Family::V4, r.insert_argv())]);
    drop(filter);
    assert_eq!(
        fake.calls(),
        vec![(Family::V4, r.insert_argv()), (Family::V4, r.delete_argv())]
    );
}

#[test]
fn a_rule_that_cannot_be_inserted_refuses_with_what_is_missing() {
    let fake = Fake {
        fail: Some("-I"),
        ..Default::default()
    };
    let r = rule(Family::V6, 7000, "fd00::2");
    let err = PortFilter::insert_with(r, Box::new(fake.clone()))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("ip6tables") && err.contains("7000"), "{err}");
    assert!(err.contains("iptables: not found"), "{err}");
    // Nothing was inserted, so nothing is deleted.
    assert_eq!(fake.calls().len(), 1);
}

#[test]
fn tags_name_their_owner_and_nothing_else_is_taken_for_one() {
    assert_eq!(owner_of(&tag(12, 345, 6789)), Some((12, 345)));
    assert_eq!(owner_of("lazarus-12-345-6789"), Some((12, 345)));
    for other in [
        "lazarus-",
        "lazarus-12-345",
        "lazarus-12-345-99999",
        "lazarus-12-345-6789-1",
        "lazarus-x-345-6789",
        "docker-12-345-6789",
        "ssh",
    ] {
        assert_eq!(owner_of(other), None, "{other}");
    }
}

#[test]
fn this_process_is_alive_and_a_reused_pid_is_not_its_owner() {
    let me = std::process::id();
    let start = own_start().unwrap();
    assert!(!owner_gone(&tag(me, start, 1)));
    assert!(owner_gone(&tag(me, start + 1, 1)));
    // Beyond pid_max (2^22): no such process.
    assert!(owner_gone(&tag(1 << 23, start, 1)));
}

const LISTING: &str = "\
-P INPUT ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT ! -s 10.0.0.2/32 -p tcp -m tcp --dport 40123 -m comment --comment lazarus-100-5-40123 -j REJECT --reject-with tcp-reset
-A INPUT ! -s 10.0.0.3/32 -p tcp -m tcp --dport 40124 -m comment --comment \"lazarus-200-6-40124\" -j REJECT --reject-with tcp-reset
-A INPUT -p tcp -m tcp --dport 22 -m comment --comment \"lazarus-ssh\" -j ACCEPT
-A INPUT -p tcp -m tcp --dport 80 -m comment --comment admin -j ACCEPT
";

#[test]
fn the_sweep_removes_the_rules_of_gone_owners_only() {
    let fake = Fake {
        v4: LISTING.into(),
        ..Default::default()
    };
    // Owner 100 is gone, 200 lives; the others are not this module's.
    sweep_stale_with(&fake, &|t| t.starts_with("lazarus-100-"));
    let calls = fake.calls();
    assert_eq!(
        calls,
        vec![
            (Family::V4, words("-S INPUT")),
            (
                Family::V4,
                words(
                    "-w 5 -D INPUT ! -s 10.0.0.2/32 -p tcp -m tcp --dport 40123 -m comment \
                     --comment lazarus-100-5-40123 -j REJECT --reject-with tcp-reset"
                )
            ),
            (Family::V6, words("-S INPUT")),
        ]
    );
}

#[test]
fn a_quoted_comment_is_deleted_unquoted() {
    let fake = Fake {
        v6: LISTING.into(),
        ..Default::default()
    };
    let removed = remove_where(&fake, &|t| t == "lazarus-200-6-40124");
    assert_eq!(removed, 1);
    let (family, argv) = fake.calls().pop().unwrap();
    assert_eq!(family, Family::V6);
    assert!(argv.iter().any(|a| a == "lazarus-200-6-40124"), "{argv:?}");
    assert!(!argv.iter().any(|a| a.contains('"')), "{argv:?}");
}

#[test]
fn a_missing_family_is_skipped_by_the_sweep() {
    let fake = Fake {
        v6: LISTING.into(),
        // Every -S fails: neither family can be listed, nothing is run.
        fail: Some("-S"),
        ..Default::default()
    };
    assert_eq!(remove_where(&fake, &|_| true), 0);
    assert_eq!(fake.calls().len(), 2);
}
