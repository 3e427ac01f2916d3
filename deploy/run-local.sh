#!/usr/bin/env bash
# `make run`: the main job on one machine. Builds qfrefund, starts a private redis-server (unless
# QFREFUND_REDIS_URL names one), the bundled QFPay simulator with some faults switched on, and two
# workers; imports a sample batch (with a duplicate, a conflict and an over-refund in it); waits
# until every refund is final and shows the outcomes, the simulator's audit and who did the work.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p qfrefund
BIN="${CARGO_TARGET_DIR:-target}/release/qfrefund"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${KEEP_WORK:-}" ]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }

if [ -z "${QFREFUND_REDIS_URL:-}" ]; then
	PORT="$(free_port)"
	"${QFREFUND_REDIS_SERVER:-redis-server}" --port "$PORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
		--dir "$WORK" --daemonize no --logfile "$WORK/redis.log" &
	PIDS+=($!)
	export QFREFUND_REDIS_URL="redis://127.0.0.1:$PORT"
	for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
	echo "== Redis: started a private redis-server (AOF, fsync always) at $QFREFUND_REDIS_URL"
else
	# Shown without what may be a password (before the last @, and any ?query).
	echo "== Redis: using $(sed -E 's#^(([a-z+]+://)?).*@#\1***@#; s#\?.*#?***#' <<<"$QFREFUND_REDIS_URL")"
fi
export QFREFUND_NAMESPACE="qfrefund-demo-$(date +%s)"

# The simulator's demo merchant (not a secret: the simulator is a test tool).
export QFPAY_APP_CODE=QFSIMAPPCODE
export QFPAY_CLIENT_KEY=QFSIM0DEMO0KEY0NOT0A0SECRET00000
unset QFPAY_MCHID
"$BIN" sim --listen 127.0.0.1:0 --generate 40 --generate-amount 10000 --quiet-window off \
	--fault-processing 0.25 --processing-ms 1500 --fault-drop 0.05 --fault-5xx 0.05 --fault-429 0.05 \
	>"$WORK/sim.out" 2>"$WORK/sim.err" &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/sim.out" 2>/dev/null && break; sleep 0.1; done
QFPAY_BASE_URL="$(grep -o 'http://[0-9.:]*' "$WORK/sim.out" | head -n1)"
[ -n "$QFPAY_BASE_URL" ] || { echo "the simulator did not start:"; cat "$WORK/sim.err"; exit 1; }
export QFPAY_BASE_URL
echo "== QFPay simulator at $QFPAY_BASE_URL: 25% processing (1.5 s), 5% apply-then-drop, 5% HTTP 500, 5% HTTP 429"

# Demo pacing: quick enquiries, the nightly window off (the simulator's is off too).
export QFREFUND_QUIET_WINDOW=off QFREFUND_RATE_PER_SEC=50 QFREFUND_RATE_BURST=50
export QFREFUND_ENQUIRY_FIRST_MS=500 QFREFUND_BACKOFF_BASE_MS=500 QFREFUND_BACKOFF_CAP_MS=2000
export QFREFUND_NOT_FOUND_GRACE_MS=5000 QFREFUND_HTTP_TIMEOUT_MS=3000 QFREFUND_LEASE_MS=5000
for i in 1 2; do
	QFREFUND_WORKER_NAME="worker$i" "$BIN" worker >"$WORK/worker$i.log" 2>&1 &
	PIDS+=($!)
done
echo "== two workers running"

CSV="$WORK/refunds.csv"
{
	echo "syssn,out_trade_no,txamt,orig_txamt"
	for i in $(seq 1 36); do printf '1%025d,RF-DEMO-%03d,%d,10000\n' "$i" "$i" $((500 + i * 100)); done
	printf '1%025d,RF-DEMO-001,600,10000\n' 1          # the same request again: a duplicate
	printf '1%025d,RF-DEMO-002,999,10000\n' 2          # same id, other amount: a conflict
	printf '1%025d,RF-DEMO-037a,6000,10000\n' 37       # these two exceed payment 37's 100.00:
	printf '1%025d,RF-DEMO-037b,6000,10000\n' 37       # the second fails, never sent
} >"$CSV"
echo "== import of $(($(wc -l <"$CSV") - 1)) lines"
"$BIN" import "$CSV" || true
echo "== one more through 'qfrefund enqueue'"
"$BIN" enqueue --syssn "$(printf '1%025d' 38)" --out-trade-no RF-DEMO-038 --amount 4200 --orig-amount 10000

echo "== waiting for every refund to be final"
for _ in $(seq 1 240); do
	left=0
	for s in queued submitting pending retry_wait; do
		left=$((left + $("$BIN" list --state "$s" | wc -l)))
	done
	[ "$left" -eq 0 ] && break
	printf '\r   %d refunds not final yet ' "$left"
	sleep 0.5
done
echo
echo "== outcomes by state"
"$BIN" list | grep -o '"state":"[a-z_]*"' | sort | uniq -c
echo "== one refund in full: qfrefund status RF-DEMO-005"
"$BIN" status RF-DEMO-005
echo "== two refunds of 60.00 against payment 37 (paid 100.00): one succeeds, the other fails, never sent"
"$BIN" status RF-DEMO-037a || true
"$BIN" status RF-DEMO-037b || true
echo "== the simulator's audit (what QFPay applied)"
if command -v curl >/dev/null 2>&1; then
	curl -fsS "$QFPAY_BASE_URL/_sim/audit" | python3 -c 'import json,sys; a=json.load(sys.stdin); print(json.dumps({"totals": a["totals"], "violations": a["violations"]}))' 2>/dev/null ||
		curl -fsS "$QFPAY_BASE_URL/_sim/audit" | head -c 400
else
	python3 -c 'import json,sys,urllib.request; a=json.load(urllib.request.urlopen(sys.argv[1]+"/_sim/audit")); print(json.dumps({"totals": a["totals"], "violations": a["violations"]}))' "$QFPAY_BASE_URL"
fi
echo "== steps taken by each worker"
for i in 1 2; do
	echo "   worker$i: $(grep -c 'submitted' "$WORK/worker$i.log" || true) submits, $(grep -c 'enquired' "$WORK/worker$i.log" || true) enquiries"
done
