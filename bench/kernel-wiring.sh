#!/usr/bin/env bash
# Benchmark: per-pod wiring through the kernel adapters (netlink), median and p99 of N runs
# (default 1000), in two throwaway network namespaces; plus the release size the adapters add.
# Run as root from the repository root: bench/kernel-wiring.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000}
target=x86_64-unknown-linux-musl
export CARGO_TARGET_DIR=$PWD/target/bench-kernel
cargo build -q --release --target "$target" --manifest-path bench/kernel-wiring/Cargo.toml
bin=$CARGO_TARGET_DIR/$target/release
host="vcni-bench-host-$$"; pod="vcni-bench-pod-$$"
ip netns add "$host"; ip netns add "$pod"
trap 'ip netns del "$host" 2>/dev/null; ip netns del "$pod" 2>/dev/null' EXIT
echo "kernel $(uname -r), $(nproc) cores, $runs runs"
"$bin/kernel-wiring" "$host" "$pod" "$runs"
with=$(stat -c %s "$bin/kernel-wiring"); without=$(stat -c %s "$bin/baseline")
echo "release size: benchmark binary $with bytes, std-only baseline $without bytes, adapters add $((with - without)) bytes"
