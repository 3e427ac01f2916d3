#!/usr/bin/env bash
# Holds the running API to its OpenAPI document: starts a redis-server and `qfrefund serve` on
# free loopback ports and runs Schemathesis (pinned in deploy/requirements-check.txt) against
# /openapi.json once per token role (read, produce, operate). Every check Schemathesis has is on:
# a schema-valid request refused, a schema-violating one accepted, an answer the document does not
# describe, a wrong method not answered 405, a server error. Any finding fails the run.
#
# Environment: QFREFUND_BIN (default ${CARGO_TARGET_DIR:-target}/debug/qfrefund),
# QFREFUND_API_CHECK_EXAMPLES (default 25, per operation and phase), QFREFUND_API_CHECK_SEED
# (default fixed, so that a run is reproducible; set another to explore).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
start=$SECONDS
die() {
	echo "API contract check: FAILED: $*" >&2
	exit 1
}
. deploy/venv.sh
BIN="$(deploy_venv "API contract check")"
BIN="$(cd "$BIN" && pwd)"
QF="${QFREFUND_BIN:-${CARGO_TARGET_DIR:-target}/debug/qfrefund}"
[ -x "$QF" ] || die "$QF not found: build it first (make bins)"
command -v redis-server >/dev/null 2>&1 || die "redis-server not found (make deps installs it)"
EXAMPLES="${QFREFUND_API_CHECK_EXAMPLES:-25}"
SEED="${QFREFUND_API_CHECK_SEED:-20261202}"

work="$(mktemp -d)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
free_port() { "$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
api_port="$(free_port)"
# The tokens exist for this run only; the default merchant is configured so that a refund can be
# enqueued (nothing here sends it: no worker runs).
read_token="read-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
produce_token="produce-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
operate_token="operate-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
QFREFUND_REDIS_URL="redis://127.0.0.1:$redis_port" \
	QFREFUND_REQUIRE_AOF=off \
	QFREFUND_API_LISTEN="127.0.0.1:$api_port" \
	QFREFUND_API_TOKENS="reader:read:$read_token,producer:produce:$produce_token,operator:operate:$operate_token" \
	QFPAY_APP_CODE=CHECKAPPCODE QFPAY_CLIENT_KEY=check-client-key-0123456789 QFPAY_BASE_URL=http://127.0.0.1:9 \
	"$QF" serve >"$work/serve.log" 2>&1 &
pids+=($!)
# (Python from the venv, not curl: a fresh machine may have no curl.)
ready() { "$BIN/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "http://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; }
for _ in $(seq 100); do
	ready && break
	sleep 0.1
done
ready || {
	tail -n 20 "$work/serve.log" >&2
	die "qfrefund serve did not become ready"
}

failed=""
for role in read produce operate; do
	token_var="${role}_token"
	out="$work/st-$role.txt"
	# (From the scratch directory: Schemathesis keeps a cache in the directory it runs in.)
	if ! (cd "$work" && "$BIN/st" --config-file "$repo/deploy/schemathesis.toml" run "http://127.0.0.1:$api_port/openapi.json" \
		-H "Authorization: Bearer ${!token_var}" --max-examples "$EXAMPLES" --seed "$SEED" \
		--generation-database=none --no-color) >"$out" 2>&1; then
		sed -n '/FAILURES\|ERRORS/,$p' "$out" | head -n 200 >&2
		failed="$failed $role"
	fi
done
if [ -n "$failed" ]; then
	echo "--- what qfrefund serve logged at WARN and above:" >&2
	grep -E ' (WARN|ERROR) ' "$work/serve.log" | tail -n 20 >&2 || true
fi
[ -z "$failed" ] || die "Schemathesis found problems with the token role(s):$failed (details above)"
echo "API contract check: ok: Schemathesis found nothing for the read, produce and operate roles ($((SECONDS - start))s)"
