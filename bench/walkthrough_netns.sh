#!/usr/bin/env bash
# The README's "Running a federation across hosts", followed literally with every participant on
# its own "host": a Linux network namespace with its own folder (its own pki/ and plan copy).
#
#   sudo bash bench/walkthrough_netns.sh [WORK_DIR]     (root, iproute2; default: a temp dir)
#   PLAN=keras_digits (default numpy_digits: the same commands, seconds instead of minutes)
#
# Hosts: ca (no network), agg (10.77.<n>.1 towards each collaborator), col1 and col2 (each on a
# veth pair to agg). Each host's /etc/hosts (ip netns exec mounts /etc/netns/<ns>/hosts) maps
# agg.example.org to the aggregator's address on its link. Files move between hosts with cp,
# standing in for scp. The aggregator is not the CA host here, so it gets its certificate with
# the README's steps for that case (csr -> sign -> import --crl --signing-cert).
# Then, two refusals the README promises: a plan that differs (the setting is named) and a host
# name the aggregator's certificate does not carry (fatal at once). Prints PASS/FAIL per check;
# exit 0 only when all pass. Everything it made (namespaces, links, /etc/netns entries,
# processes) is removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"   # PY=/path/to/venv/bin/python for another environment
PLAN="${PLAN:-numpy_digits}"
TAG="$$"
NS_CA="fxca$TAG" NS_AGG="fxagg$TAG" NS_COL1="fxcol1$TAG" NS_COL2="fxcol2$TAG"
PORT=$(grep -E '^\s*port:' "$ROOT/plans/$PLAN/plan.yaml" | head -1 | awk '{print $2}')
NET=$(( TAG % 200 + 20 ))          # 10.$NET.{1,2}.0/24: one link per collaborator
WORK="${1:-$(mktemp -d /tmp/fx-walkthrough.XXXXXX)}"
PIDS=()
FAILED=0
NETNS_ETC_NEW=0; [ -d /etc/netns ] || NETNS_ETC_NEW=1

[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
[ -x "$PY" ] || { echo "walkthrough: no python at $PY (make install, or set PY=...)"; exit 1; }
command -v ip >/dev/null || { echo "SKIP: needs iproute2 (ip)"; exit 77; }

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for ns in "$NS_CA" "$NS_AGG" "$NS_COL1" "$NS_COL2"; do
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  [ "$NETNS_ETC_NEW" = 0 ] || rmdir /etc/netns 2>/dev/null || true
}
trap cleanup EXIT

# shellcheck source=bench/netns_common.sh
source "$ROOT/bench/netns_common.sh"

say "hosts: network namespaces, links, /etc/hosts"
mkdir -p "$WORK/bin" "$WORK/ca" "$WORK/agg" "$WORK/col1" "$WORK/col2"
make_fx_wrapper "$ROOT" "$PY"
for ns in "$NS_CA" "$NS_AGG" "$NS_COL1" "$NS_COL2"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
i=0
for ns in "$NS_COL1" "$NS_COL2"; do
  i=$((i + 1))
  ip link add "fxa$i$TAG" type veth peer name "fxc$i$TAG"
  ip link set "fxa$i$TAG" netns "$NS_AGG"
  ip link set "fxc$i$TAG" netns "$ns"
  ip -n "$NS_AGG" addr add "10.$NET.$i.1/24" dev "fxa$i$TAG"
  ip -n "$ns" addr add "10.$NET.$i.2/24" dev "fxc$i$TAG"
  ip -n "$NS_AGG" link set "fxa$i$TAG" up
  ip -n "$ns" link set "fxc$i$TAG" up
  mkdir -p "/etc/netns/$ns"
  printf '127.0.0.1 localhost\n10.%s.%s.1 agg.example.org agg-alias.example.org\n' "$NET" "$i" \
    > "/etc/netns/$ns/hosts"
done
echo "ca: no links; agg: 10.$NET.1.1 (col1), 10.$NET.2.1 (col2); work dir $WORK"

say "each participant's own copy of plans/$PLAN (two collaborators: col1, col2)"
for host in agg col1 col2; do
  mkdir -p "$WORK/$host/plans"
  cp -r "$ROOT/plans/$PLAN" "$WORK/$host/plans/$PLAN"
  rm -rf "$WORK/$host/plans/$PLAN/workspace"
  printf 'collaborators:\n  - col1\n  - col2\n' > "$WORK/$host/plans/$PLAN/cols.yaml"
  printf 'col1: 0\ncol2: 1\n' > "$WORK/$host/plans/$PLAN/data.yaml"
done
started=$(date +%s)

say "on the CA host (once)"
on "$NS_CA" "$WORK/ca" fx pki init
say "on the aggregator host (not the CA host): key and CSR, signed by the CA, imported"
on "$NS_AGG" "$WORK/agg" fx pki csr --name aggregator --role aggregator \
  --san agg.example.org --san "10.$NET.1.1" --san "10.$NET.2.1"
cp "$WORK/agg/pki/requests/aggregator.csr" "$WORK/ca/"
on "$NS_CA" "$WORK/ca" "echo y | fx pki sign aggregator.csr"
cp "$WORK/ca/pki/certs/aggregator.crt" "$WORK/ca/pki/ca/ca-bundle.pem" "$WORK/ca/pki/ca/crl.pem" \
  "$WORK/ca/pki/ca/signing.crt" "$WORK/agg/"
on "$NS_AGG" "$WORK/agg" fx pki import --cert aggregator.crt --ca-bundle ca-bundle.pem \
  --crl crl.pem --signing-cert signing.crt
for col in col1 col2; do
  ns_var="NS_${col^^}"; ns="${!ns_var}"
  say "on collaborator host $col"
  on "$ns" "$WORK/$col" fx pki csr --name "$col" --role collaborator
  cp "$WORK/$col/pki/requests/$col.csr" "$WORK/ca/"
  on "$NS_CA" "$WORK/ca" "echo y | fx pki sign $col.csr"
  cp "$WORK/ca/pki/certs/$col.crt" "$WORK/ca/pki/ca/ca-bundle.pem" "$WORK/$col/"
  on "$ns" "$WORK/$col" fx pki import --cert "$col.crt" --ca-bundle ca-bundle.pem
  on "$ns" "$WORK/$col" fx pki verify "$col"
  on "$ns" "$WORK/$col" fx pki list
done
pki_done=$(date +%s)

say "run: the aggregator, then both collaborators dialling agg.example.org:$PORT"
bg_on "$NS_AGG" "$WORK/agg" "$WORK/agg/aggregator.log" \
  fx aggregator start -p "plans/$PLAN" --host 0.0.0.0
AGG_PID=$BG_PID
wait_for_line "$WORK/agg/aggregator.log" "listening on" 120 || {
  cat "$WORK/agg/aggregator.log"; echo "FAIL  aggregator did not start"; exit 1; }
COL_PIDS=()
for col in col1 col2; do
  ns_var="NS_${col^^}"; ns="${!ns_var}"
  bg_on "$ns" "$WORK/$col" "$WORK/$col/collaborator.log" \
    fx collaborator start -n "$col" -p "plans/$PLAN" --aggregator "agg.example.org:$PORT"
  COL_PIDS+=("$BG_PID")
done
codes=()
for pid in "${COL_PIDS[@]}" "$AGG_PID"; do
  code=0; wait "$pid" || code=$?
  codes+=("$code")
done
finished=$(date +%s)
check "collaborators and aggregator exit 0 (exit codes ${codes[*]})" \
  test "${codes[*]}" = "0 0 0"
check "the aggregator printed the final accuracy" \
  grep -q "final test accuracy" "$WORK/agg/aggregator.log"
grep -h "final test accuracy\|finished" "$WORK/agg/aggregator.log" | tail -2 || true

say "refusal 1: col1's plan copy trains 5 rounds, the aggregator's 10"
sed -i -E 's/^(\s*rounds_to_train:)\s*[0-9]+/\1 10/' "$WORK/agg/plans/$PLAN/plan.yaml"
cp -r "$WORK/col1/plans/$PLAN" "$WORK/col1/plans/${PLAN}_5"
sed -i -E 's/^(\s*rounds_to_train:)\s*[0-9]+/\1 5/' "$WORK/col1/plans/${PLAN}_5/plan.yaml"
bg_on "$NS_AGG" "$WORK/agg" "$WORK/agg/aggregator2.log" \
  fx aggregator start -p "plans/$PLAN" --host 0.0.0.0 --fresh
wait_for_line "$WORK/agg/aggregator2.log" "listening on" 120 || {
  cat "$WORK/agg/aggregator2.log"; echo "FAIL  aggregator did not restart"; exit 1; }
set +e
on "$NS_COL1" "$WORK/col1" \
  fx collaborator start -n col1 -p "plans/${PLAN}_5" --aggregator "agg.example.org:$PORT" \
  > "$WORK/col1/mismatch.log" 2>&1
set -e
cat "$WORK/col1/mismatch.log" | grep "fx: error" || true
check "the differing setting is named" \
  grep -q "aggregator.rounds_to_train: 10 here, 5 at collaborator col1" "$WORK/col1/mismatch.log"

say "refusal 2: col2 dials agg-alias.example.org, a name the certificate does not carry"
t0=$(date +%s)
set +e
on "$NS_COL2" "$WORK/col2" FX_RETRY_TOTAL_SECONDS=300 \
  fx collaborator start -n col2 -p "plans/$PLAN" --aggregator "agg-alias.example.org:$PORT" \
  > "$WORK/col2/hostname.log" 2>&1
set -e
t1=$(date +%s)
cat "$WORK/col2/hostname.log" | grep "fx: error" || true
check "hostname mismatch is fatal at once ($((t1 - t0)) s of a 300 s retry window)" \
  test $((t1 - t0)) -lt 30
check "it names the host dialled and the certificate's names" \
  grep -q "does not name 'agg-alias.example.org'.*it names: agg.example.org" \
  "$WORK/col2/hostname.log"

say "summary"
echo "PKI steps: $((pki_done - started)) s; federation ($PLAN): $((finished - pki_done)) s"
if [ "$FAILED" = 0 ]; then echo "walk-through across hosts: SUCCESS"; else
  echo "walk-through across hosts: FAILED (logs in $WORK)"; fi
exit "$FAILED"
