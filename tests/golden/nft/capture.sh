#!/usr/bin/env bash
# Regenerates <name>.debug from <name>.nft: the bytecode `nft --debug=netlink -f <name>.nft` prints,
# run in a throwaway network namespace (needs root and nft). The golden tests in core/src/nft/tests.rs
# compare our encoded rules with these files.
set -euo pipefail
cd "$(dirname "$0")"
ns="vcni-nftgold-$$"
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
for f in *.nft; do
  ip netns exec "$ns" nft flush ruleset
  ip netns exec "$ns" nft --debug=netlink -f "$f" > "${f%.nft}.debug"
done
