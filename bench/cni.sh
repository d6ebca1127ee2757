#!/usr/bin/env bash
# CNI plugin latency: ADD and DEL median and p99 over N pods (default 200) through libcni (tests/cni-client),
# aws-cni (musl release build, stand-in ipamd bench/cni_ipamd_stub.py) vs the reference ptp + host-local, in the same
# run, on the same "node" namespace. Pods are namespaces made up front. Run as root; prints a Markdown table.
# Not a test: figures go to docs/benchmarks.md ("CNI plugin").
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200}
root=$PWD
work=$(mktemp -d /tmp/vcni-bench-cni.XXXXXX)
node="vcni-bench-node-$$"
stub_pid=""
cleanup() {
  [ -n "$stub_pid" ] && kill "$stub_pid" 2>/dev/null || true
  for i in $(seq 1 "$N"); do ip netns del "vcni-bench-pod-$$-$i" 2>/dev/null || true; done
  ip netns del "$node" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The shipped binary: musl, static (scripts/check-release builds the same).
target=x86_64-unknown-linux-musl
cargo build --release --quiet --target "$target"
# libcni v1.3 client (tests/cni-client), built once into the peer cache by scripts/build-peers.
client=$(scripts/build-peers --print-env cni | sed -n 's/^VPC_CNI_PEER_CNI_CLIENT=//p')
mkdir -p "$work/bin"
ln -s "$root/target/$target/release/vpc-cni" "$work/bin/aws-cni"

ip netns add "$node"
ip -n "$node" link set lo up
ip -n "$node" link add eth0 type veth peer name eth0p
ip -n "$node" addr add 10.0.0.10/16 dev eth0
ip -n "$node" link set eth0 up
ip -n "$node" link set eth0p up
for i in $(seq 1 "$N"); do
  ip netns add "vcni-bench-pod-$$-$i"
  ip -n "vcni-bench-pod-$$-$i" link set lo up
done

python3 bench/cni_ipamd_stub.py "$work/ipamd.sock" 10.0.0.20 "$N" > "$work/stub.out" &
stub_pid=$!
for _ in $(seq 1 50); do grep -q ready "$work/stub.out" 2>/dev/null && break; sleep 0.1; done

cat > "$work/aws.conflist" <<JSON
{"cniVersion":"1.0.0","name":"aws-cni","plugins":[{"type":"aws-cni","name":"aws-cni","vethPrefix":"eni",
 "mtu":"9001","pluginLogFile":"$work/plugin.log","pluginLogLevel":"DEBUG"}]}
JSON
cat > "$work/ptp.conflist" <<JSON
{"cniVersion":"1.0.0","name":"ptp-bench","plugins":[{"type":"ptp","mtu":9001,
 "ipam":{"type":"host-local","subnet":"10.1.0.0/16","dataDir":"$work/host-local"}}]}
JSON

python3 - "$N" "$$" > "$work/requests.jsonl" <<'PY'
import json, sys
n, pid = int(sys.argv[1]), sys.argv[2]
def req(op, i):
    return json.dumps({"op": op, "containerID": f"bench{pid}x{i}", "netns": f"/var/run/netns/vcni-bench-pod-{pid}-{i}",
                       "ifname": "eth0", "args": [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", "bench"],
                                                  ["K8S_POD_NAME", f"pod-{i}"]]})
for op in ("add", "del"):
    for i in range(1, n + 1):
        print(req(op, i))
PY

run() {
  ip netns exec "$node" env VPC_CNI_IPAMD_SOCKET="$work/ipamd.sock" \
    "$client" -conflist "$work/$1.conflist" -path "$work/bin:/usr/lib/cni" -cache "$work/cache-$1" \
    < "$work/requests.jsonl" > "$work/$1.out"
}
run aws
run ptp

python3 - "$N" "$work/aws.out" "$work/ptp.out" <<'PY'
import json, math, sys
n = int(sys.argv[1])
print(f"| plugin (N={n} pods, libcni, same node netns) | ADD median | ADD p99 | DEL median | DEL p99 |")
print("|---|---|---|---|---|")
for label, path in (("aws-cni (vpc-cni)", sys.argv[2]), ("ptp + host-local (reference 1.1.1)", sys.argv[3])):
    lines = [json.loads(l) for l in open(path)]
    bad = [l for l in lines if not l["ok"]]
    if bad:
        sys.exit(f"{label}: {len(bad)} failed operations, first: {bad[0]}")
    add = sorted(l["micros"] for l in lines[:n]); dele = sorted(l["micros"] for l in lines[n:])
    med = lambda v: (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2
    p99 = lambda v: v[math.ceil(0.99 * len(v)) - 1]
    ms = lambda us: f"{us / 1000:.1f} ms"
    print(f"| {label} | {ms(med(add))} | {ms(p99(add))} | {ms(med(dele))} | {ms(p99(dele))} |")
PY
