#!/usr/bin/env bash
# Two home networks behind NAT routers and a public "internet", built from
# network namespaces on this machine (root only), for tests and experiments
# with peers behind NAT. Nothing leaves the namespaces: the root namespace
# gets no address and no route into them.
#
#   scripts/netns-nat.sh up TAG [cone|symmetric]   build it (default cone)
#   scripts/netns-nat.sh down TAG                  kill what runs inside, remove it
#
# TAG (letters and digits, at most 6) prefixes every name, so that several
# topologies can exist at once. The layout, with TAG=t:
#
#   t-pub   198.18.0.10     public host (bootstrap peer, public nodes)
#   t-inet  bridge          the "internet": pub, r1 and r2 meet here
#   t-r1    198.18.0.1 / 10.1.0.1   home router 1: NAT for 10.1.0.0/24
#   t-h1    10.1.0.2        a machine at home 1
#   t-r2    198.18.0.2 / 10.2.0.1   home router 2: NAT for 10.2.0.0/24
#   t-h2    10.2.0.2        a machine at home 2
#
# cone: plain MASQUERADE (a flow keeps its source port where it can, so
# hole punching works). symmetric: MASQUERADE --random-fully (every flow a
# new random port: hole punching fails, relays must carry the traffic).
# 198.18.0.0/15 is the range reserved for such test networks (RFC 2544).
set -euo pipefail

die() { echo "netns-nat: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 up|down TAG [cone|symmetric]"
cmd=$1 tag=$2 nat=${3:-cone}
[[ $tag =~ ^[a-zA-Z0-9]{1,6}$ ]] || die "TAG must be 1 to 6 letters or digits"
[ "$(id -u)" = 0 ] || die "needs root (ip netns, iptables)"

ns() { echo "$tag-$1"; }

down() {
  local n
  for n in pub h1 h2 r1 r2 inet; do
    if ip netns list | grep -qw "$(ns $n)"; then
      # Whatever a test left running inside goes with it.
      ip netns pids "$(ns $n)" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$(ns $n)" 2>/dev/null || true
    fi
  done
}

link() { # link NS_A IF_A NS_B IF_B
  ip -n "$(ns $1)" link add "$2" type veth peer name "$4" netns "$(ns $3)"
}

up() {
  command -v iptables >/dev/null || die "iptables is missing: apt-get install -y iptables"
  down
  local n
  for n in inet pub r1 h1 r2 h2; do
    ip netns add "$(ns $n)"
    ip -n "$(ns $n)" link set lo up
  done
  ip -n "$(ns inet)" link add name br0 type bridge
  ip -n "$(ns inet)" link set br0 up
  link pub eth0 inet pub
  link r1 wan inet r1
  link r2 wan inet r2
  for n in pub r1 r2; do
    ip -n "$(ns inet)" link set "$n" master br0
    ip -n "$(ns inet)" link set "$n" up
  done
  ip -n "$(ns pub)" addr add 198.18.0.10/24 dev eth0
  ip -n "$(ns pub)" link set eth0 up
  # A dial to a silent NAT fails when the kernel gives up on its SYNs: two
  # minutes by default. The public host gives up after 3 s, so that AutoNAT
  # dial-backs to the homes (and dials of their private addresses) end
  # within a test's patience; nothing else here depends on it.
  ip netns exec "$(ns pub)" sysctl -qw net.ipv4.tcp_syn_retries=1
  local i
  for i in 1 2; do
    local r h
    r=$(ns r$i) h=$(ns h$i)
    link "r$i" lan "h$i" eth0
    ip -n "$r" addr add "198.18.0.$i/24" dev wan
    ip -n "$r" addr add "10.$i.0.1/24" dev lan
    ip -n "$r" link set wan up
    ip -n "$r" link set lan up
    ip -n "$h" addr add "10.$i.0.2/24" dev eth0
    ip -n "$h" link set eth0 up
    ip -n "$h" route add default via "10.$i.0.1"
    ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
    local random=()
    [ "$nat" = symmetric ] && random=(--random-fully)
    ip netns exec "$r" iptables -t nat -A POSTROUTING -s "10.$i.0.0/24" -o wan -j MASQUERADE "${random[@]}"
    # A home router forwards only what answers a flow from inside.
    ip netns exec "$r" iptables -A FORWARD -i lan -o wan -j ACCEPT
    ip netns exec "$r" iptables -A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    ip netns exec "$r" iptables -P FORWARD DROP
    # ...and drops, without a reset, what nobody inside asked for (a reset
    # would tear down the other side's half of a hole punch).
    ip netns exec "$r" iptables -A INPUT -i wan -m conntrack --ctstate NEW,INVALID -j DROP
  done
}

case $cmd in
  up) [[ $nat =~ ^(cone|symmetric)$ ]] || die "NAT must be cone or symmetric"; up ;;
  down) down ;;
  *) die "unknown command $cmd (up or down)" ;;
esac
