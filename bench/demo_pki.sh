#!/usr/bin/env bash
# The PKI demo (`make demo-pki`): a workspace PKI issued and verified by `fx`, cross-checked with
# the openssl command line.
#   bash bench/demo_pki.sh [DIR]     (default: workspace/demo-pki, replaced on every run)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FX="${FX:-$ROOT/.venv/bin/fx}"
DEMO_DIR="${1:-$ROOT/workspace/demo-pki}"
PKI="$DEMO_DIR/pki"
unset FX_PKI_DIR FX_CA_PASSPHRASE

say() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

[ -x "$FX" ] || { echo "demo-pki: $FX not found; run 'make install' first" >&2; exit 1; }
case "$DEMO_DIR" in ""|"/") echo "demo-pki: refusing to use '$DEMO_DIR'" >&2; exit 1;; esac
rm -rf "$DEMO_DIR"   # a fresh demo each time: the previous run's CA and certificates go
mkdir -p "$DEMO_DIR/collaborator2-host"
cd "$DEMO_DIR"
start=$(date +%s%N)

say "1. a two-tier CA: root CA -> signing CA"
run "$FX" pki init --pki-dir "$PKI"

say "2. the aggregator's server certificate (serverAuth; SANs localhost, 127.0.0.1, $(hostname))"
run "$FX" pki certify --pki-dir "$PKI" --name aggregator --role aggregator

say "3. collaborator1 in one step (key and certificate made by the CA host)"
run "$FX" pki certify --pki-dir "$PKI" --name collaborator1 --role collaborator

say "4. collaborator2 through the CSR flow: its key never leaves its host"
run "$FX" pki csr --name collaborator2 --role collaborator --out collaborator2-host
run "$FX" pki sign --pki-dir "$PKI" collaborator2-host/collaborator2.csr --yes

say "5. verification by fx (chain, validity, role, key usage/EKU, revocation)"
for name in aggregator collaborator1 collaborator2; do
  run "$FX" pki verify --pki-dir "$PKI" "$name"
done

say "6. the same certificates checked independently by openssl (with the CRL)"
if command -v openssl >/dev/null; then
  run openssl verify -crl_check -CRLfile "$PKI/ca/crl.pem" -CAfile "$PKI/ca/root.crt" \
    -untrusted "$PKI/ca/signing.crt" \
    "$PKI/certs/aggregator.crt" "$PKI/certs/collaborator1.crt" "$PKI/certs/collaborator2.crt"
else
  echo "(openssl not installed: skipped)"
fi

say "7. the store"
run "$FX" pki list --pki-dir "$PKI"

elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
say "done in ${elapsed_ms} ms"
cat <<EOT
What happened, in $DEMO_DIR:
  - pki/ca/: a root CA (pathlen 1) that signed only the signing CA (pathlen 0), the CA bundle
    servers and clients trust (ca-bundle.pem) and an empty, signed CRL (crl.pem).
  - pki/certs/aggregator.crt: ECDSA P-384 / SHA-384 server certificate with serverAuth.
  - pki/certs/collaborator1.crt, collaborator2.crt: client certificates with clientAuth and
    CN = participant name; collaborator2's key stayed in collaborator2-host/ (mode 0600).
  - every certificate verified by 'fx pki verify' and by 'openssl verify -crl_check'.
Try next: $FX pki revoke --pki-dir $PKI collaborator1 && $FX pki verify --pki-dir $PKI collaborator1
EOT
