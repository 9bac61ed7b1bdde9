#!/usr/bin/env bash
# docs/vertical.md's "Run it across two hosts", followed with each party on its own "host": a
# Linux network namespace with its own folder (its own pki/ and plan copy), and the CA on a third.
#
#   sudo bash bench/walkthrough_vertical_netns.sh [WORK_DIR]     (root, iproute2)
#
# Hosts: ca (no network), shop (the leader, 10.<n>.1.1) and bank (the follower, 10.<n>.1.2) on
# one veth pair. Each host's /etc/hosts (ip netns exec mounts /etc/netns/<ns>/hosts) maps
# shop.example.org and bank.example.org. Each party gets its certificate by the CSR flow
# (csr on its host -> sign on the CA host -> import with the CRL: a party serves its peer and
# checks revocation, as an aggregator does); files move with cp, standing in for scp.
# Checks: both parties finish with the same accuracy >= 0.9; then a follower whose plan copy
# names another session is refused at connection with both ids named, fatal at once.
# Prints PASS/FAIL per check; exit 0 only when all pass. Everything it made (namespaces, links,
# /etc/netns entries, processes) is removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
TAG="$$"
NS_CA="fxvca$TAG" NS_SHOP="fxvshop$TAG" NS_BANK="fxvbank$TAG"
NET=$(( TAG % 200 + 20 ))
WORK="${1:-$(mktemp -d /tmp/fx-vertical-walkthrough.XXXXXX)}"
PIDS=()
FAILED=0
NETNS_ETC_NEW=0; [ -d /etc/netns ] || NETNS_ETC_NEW=1

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
[ -x "$PY" ] || { echo "walkthrough: no python at $PY (make install, or set PY=...)"; exit 1; }
command -v ip >/dev/null || { echo "SKIP: needs iproute2 (ip)"; exit 77; }

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "$NS_CA" "$NS_SHOP" "$NS_BANK"; do
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  [ "$NETNS_ETC_NEW" = 0 ] || rmdir /etc/netns 2>/dev/null || true
}
trap cleanup EXIT

# shellcheck source=bench/netns_common.sh
source "$ROOT/bench/netns_common.sh"

say "hosts: network namespaces, one link, /etc/hosts"
mkdir -p "$WORK/bin" "$WORK/ca" "$WORK/shop" "$WORK/bank"
make_fx_wrapper "$ROOT" "$PY"
for ns in "$NS_CA" "$NS_SHOP" "$NS_BANK"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip link add "fxvs$TAG" type veth peer name "fxvb$TAG"
ip link set "fxvs$TAG" netns "$NS_SHOP"
ip link set "fxvb$TAG" netns "$NS_BANK"
ip -n "$NS_SHOP" addr add "10.$NET.1.1/24" dev "fxvs$TAG"
ip -n "$NS_BANK" addr add "10.$NET.1.2/24" dev "fxvb$TAG"
ip -n "$NS_SHOP" link set "fxvs$TAG" up
ip -n "$NS_BANK" link set "fxvb$TAG" up
for ns in "$NS_SHOP" "$NS_BANK"; do
  mkdir -p "/etc/netns/$ns"
  printf '127.0.0.1 localhost\n10.%s.1.1 shop.example.org\n10.%s.1.2 bank.example.org\n' \
    "$NET" "$NET" > "/etc/netns/$ns/hosts"
done
echo "shop: 10.$NET.1.1, bank: 10.$NET.1.2; work dir $WORK"

say "each party's own copy of plans/vertical_digits, addresses set to the two hosts"
for host in shop bank; do
  mkdir -p "$WORK/$host/plans"
  cp -r "$ROOT/plans/vertical_digits" "$WORK/$host/plans/vertical_digits"
  rm -rf "$WORK/$host/plans/vertical_digits/workspace"
  sed -i -e 's/address: 127.0.0.1:50071/address: shop.example.org:50071/' \
    -e 's/address: 127.0.0.1:50072/address: bank.example.org:50072/' \
    "$WORK/$host/plans/vertical_digits/plan.yaml"
done
started=$(date +%s)

say "on the CA host (once)"
on "$NS_CA" "$WORK/ca" fx pki init
for host in shop bank; do
  ns_var="NS_${host^^}"; ns="${!ns_var}"
  say "on $host: key and CSR (role party, its host name), signed by the CA, imported"
  on "$ns" "$WORK/$host" fx pki csr --name "$host" --role party --san "$host.example.org"
  cp "$WORK/$host/pki/requests/$host.csr" "$WORK/ca/"
  on "$NS_CA" "$WORK/ca" "echo y | fx pki sign $host.csr"
  cp "$WORK/ca/pki/certs/$host.crt" "$WORK/ca/pki/ca/ca-bundle.pem" "$WORK/ca/pki/ca/crl.pem" \
    "$WORK/ca/pki/ca/signing.crt" "$WORK/$host/"
  on "$ns" "$WORK/$host" fx pki import --cert "$host.crt" --ca-bundle ca-bundle.pem \
    --crl crl.pem --signing-cert signing.crt
  on "$ns" "$WORK/$host" fx pki verify "$host"
done
pki_done=$(date +%s)

say "run: one party per host, in either order (the follower first here)"
bg_on "$NS_BANK" "$WORK/bank" "$WORK/bank/follower.log" \
  fx vertical start --role follower --plan plans/vertical_digits --pki-dir pki
BANK_PID=$BG_PID
sleep 1
bg_on "$NS_SHOP" "$WORK/shop" "$WORK/shop/leader.log" \
  fx vertical start --role leader --plan plans/vertical_digits --pki-dir pki
SHOP_PID=$BG_PID
codes=()
for pid in "$BANK_PID" "$SHOP_PID"; do
  code=0; wait "$pid" || code=$?
  codes+=("$code")
done
finished=$(date +%s)
check "both parties exit 0 (exit codes ${codes[*]})" test "${codes[*]}" = "0 0"
shop_acc=$(grep -oE "final test accuracy: [0-9.]+" "$WORK/shop/leader.log" | tail -1 || true)
bank_acc=$(grep -oE "final test accuracy: [0-9.]+" "$WORK/bank/follower.log" | tail -1 || true)
echo "shop: $shop_acc; bank: $bank_acc"
check "both print the same final accuracy" test -n "$shop_acc" -a "$shop_acc" = "$bank_acc"
check "the accuracy is at least 0.9" \
  "$PY" -c "import sys; sys.exit(float('${shop_acc##* }' or 0) < 0.9)"
check "the leader dialled bank.example.org over mutual TLS" \
  grep -q "connected to peer bank at bank.example.org:50072" "$WORK/shop/leader.log"

say "refusal: the follower's plan copy names another session"
sed -i 's/^session_id: .*/session_id: vertical-digits-v2/' \
  "$WORK/bank/plans/vertical_digits/plan.yaml"
bg_on "$NS_SHOP" "$WORK/shop" "$WORK/shop/leader2.log" \
  fx vertical start --role leader --plan plans/vertical_digits --pki-dir pki --fresh
t0=$(date +%s)
set +e
on "$NS_BANK" "$WORK/bank" \
  fx vertical start --role follower --plan plans/vertical_digits --pki-dir pki --fresh \
  > "$WORK/bank/mismatch.log" 2>&1
set -e
t1=$(date +%s)
grep "fx: error" "$WORK/bank/mismatch.log" || true
check "the follower is refused at once ($((t1 - t0)) s of a 120 s connect window)" \
  test $((t1 - t0)) -lt 60
check "the refusal names both session ids" \
  grep -qE "vertical-digits-v2.*vertical-digits-v1|vertical-digits-v1.*vertical-digits-v2" \
  "$WORK/bank/mismatch.log"

say "summary"
echo "PKI steps: $((pki_done - started)) s; vertical training: $((finished - pki_done)) s"
if [ "$FAILED" = 0 ]; then echo "vertical walk-through across hosts: SUCCESS"; else
  echo "vertical walk-through across hosts: FAILED (logs in $WORK)"; fi
exit "$FAILED"
