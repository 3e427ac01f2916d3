#!/usr/bin/env bash
# `make run`: build qfrefund, start the bundled QFPay simulator on a free loopback port, send one
# signed refund through it, enquire it back, and print the simulator's audit.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p qfrefund
BIN="${CARGO_TARGET_DIR:-target}/release/qfrefund"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

# The simulator's demo merchant (not a secret; the simulator is a test tool).
export QFPAY_APP_CODE=QFSIMAPPCODE
export QFPAY_CLIENT_KEY=QFSIM0DEMO0KEY0NOT0A0SECRET00000
unset QFPAY_MCHID

"$BIN" sim --listen 127.0.0.1:0 --generate 5 --quiet-window off >"$WORK/sim.out" 2>"$WORK/sim.err" &
PIDS+=($!)
for _ in $(seq 1 100); do
	grep -q "listening on" "$WORK/sim.out" 2>/dev/null && break
	sleep 0.1
done
QFPAY_BASE_URL="$(grep -o 'http://[0-9.:]*' "$WORK/sim.out" | head -n1)"
[ -n "$QFPAY_BASE_URL" ] || { echo "simulator did not start:"; cat "$WORK/sim.err"; exit 1; }
export QFPAY_BASE_URL
echo "== simulator: $QFPAY_BASE_URL"

OTN="RF-DEMO-$(date +%s)"
SYSSN=10000000000000000000000001
echo "== refund 15.00 of payment $SYSSN as $OTN"
"$BIN" qfpay refund --syssn "$SYSSN" --out-trade-no "$OTN" --amount 1500
echo "== enquiry for $OTN"
"$BIN" qfpay query --out-trade-no "$OTN"
echo "== simulator audit"
if command -v curl >/dev/null 2>&1; then
	curl -fsS "$QFPAY_BASE_URL/_sim/audit"
else
	python3 -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1]+"/_sim/audit").read().decode())' "$QFPAY_BASE_URL"
fi
echo
