# shellcheck shell=bash
# "Hosts" as network namespaces on this machine, for the migration demo
# (the e2e suite and the benchmarks have their own,
# test/e2e/support/netns.rs). Source this file, then:
#   nh_add NS                        a network namespace with lo up
#   nh_link NS1 ADDR1 NS2 ADDR2      a veth pair between NS1 and NS2 with
#                                    ADDR1/30 and ADDR2/30 ("" names this,
#                                    the root namespace)
#   nh_del NS...                     deletes them (their veth ends go too)
#   nh_in NS COMMAND...              runs COMMAND in NS's network only (the
#                                    file system and mounts stay this host's)
# With private-daemons.sh: PD_NETNS=NS before pd_start runs that daemon set
# (containerd, dockerd, and so their shims, CRIU and host-network
# containers) inside NS.

NH_LINKS=0

nh_add() {
  ip netns add "$1"
  ip netns exec "$1" ip link set lo up
}

nh_link() { # NS1 ADDR1 NS2 ADDR2
  NH_LINKS=$((NH_LINKS + 1))
  local a=lzh$$x${NH_LINKS}a b=lzh$$x${NH_LINKS}b
  ip link add "$a" type veth peer name "$b"
  nh_place "$a" "$1" "$2"
  nh_place "$b" "$3" "$4"
}

nh_place() { # DEV NS ADDR
  local run=()
  if [ -n "$2" ]; then
    ip link set "$1" netns "$2"
    run=(ip netns exec "$2")
  fi
  "${run[@]}" ip addr add "$3/30" dev "$1"
  "${run[@]}" ip link set "$1" up
}

nh_del() {
  local ns
  for ns in "$@"; do ip netns del "$ns" 2>/dev/null || true; done
}

nh_in() { # NS COMMAND...
  local ns=$1; shift
  nsenter "--net=/run/netns/$ns" -- "$@"
}
