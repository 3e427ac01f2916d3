# qfrefund — the two commands of the README are `make run` and `make test`.
# Every target installs the Debian packages it needs instead of failing obscurely.

SHELL := /bin/bash
CARGO ?= cargo
# Share one target dir between every target (and with CI); builds are the slow part here.
export CARGO_TARGET_DIR ?= $(CURDIR)/target

.PHONY: run run-deps docs test deps check-tools fmt lint deny audit unit bins chaos fuzz bench deploy-check api-contract producer cluster

## run: build, start the QFPay simulator (and Redis when needed), push refunds through, show the outcome
run: run-deps
	@bash deploy/run-local.sh

## test: formatting, clippy with warnings as errors, and every test against real redis-server processes
test: deps fmt lint deny deploy-check docs unit api-contract producer

## deploy-check: validate deploy/ (Dockerfile, compose, Kubernetes manifests) offline after the
## first install of the pinned tools from PyPI (see deploy/check.sh)
deploy-check:
	@bash deploy/check.sh

## docs: docs/ builds as a book (mdBook, pinned with the deploy tools) into target/book, and every
## page there is in its table of contents (docs/SUMMARY.md)
docs:
	@. deploy/venv.sh && bin="$$(deploy_venv docs)" && \
	for page in docs/*.md; do \
		name="$${page#docs/}"; [ "$$name" = SUMMARY.md ] || grep -q "]($$name)" docs/SUMMARY.md || \
			{ echo "docs: $$page is in no chapter of docs/SUMMARY.md" >&2; exit 1; }; \
	done && \
	out="$$("$$bin/mdbook" build docs -d "$(CARGO_TARGET_DIR)/book" 2>&1)" || { echo "$$out" >&2; exit 1; }; \
	if grep -E "WARN|ERROR" <<<"$$out"; then echo "docs: mdbook warned (above)" >&2; exit 1; fi; \
	echo "docs: the book is in $(CARGO_TARGET_DIR)/book/index.html"

## api-contract: Schemathesis against a running `qfrefund serve`, once per token role, every check
## on (see deploy/check_api.sh; the tools come from the same pinned venv as deploy-check)
api-contract: bins
	@bash deploy/check_api.sh

## producer: the producer library's doctests, and proof that it compiles no HTTP client or TLS
## stack unless asked (`tls` feature)
producer:
	$(CARGO) build -q -p qfrefund-producer
	$(CARGO) build -q -p qfrefund-producer --features tls
	$(CARGO) test -q -p qfrefund-producer --doc
	@tree="$$($(CARGO) tree -p qfrefund-producer -e normal --prefix none)" && [ -n "$$tree" ] || { echo "cargo tree failed" >&2; exit 1; }; \
	if grep -E '^(reqwest|hyper|rustls|tokio-rustls) ' <<<"$$tree"; then \
		echo "qfrefund-producer pulls in the crates above: it must not (see crates/producer/Cargo.toml)" >&2; exit 1; \
	else echo "qfrefund-producer: no HTTP client, no TLS stack ($$(sort -u <<<"$$tree" | wc -l) crates)"; fi

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## deny: licences, banned crates and sources (offline); installs cargo-deny when missing
deny:
	@command -v cargo-deny >/dev/null 2>&1 || $(CARGO) install cargo-deny --locked
	$(CARGO) deny --log-level error check --hide-inclusion-graph licenses bans sources

## audit: RustSec advisories (needs network access to the advisory database)
audit:
	@command -v cargo-deny >/dev/null 2>&1 || $(CARGO) install cargo-deny --locked
	$(CARGO) deny check advisories

## unit: every test with a ledger of one shard, then again with four (QFREFUND_SHARDS, which the
## test harness and the spawned binaries read alike)
unit: bins
	@if command -v cargo-nextest >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast && \
		QFREFUND_SHARDS=4 $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast && \
		QFREFUND_SHARDS=4 $(CARGO) test --workspace --no-fail-fast; \
	fi

## cluster: the Redis Cluster suite alone (3 primaries with AOF, 8 shards, kill -9, slot migration)
cluster: deps bins
	$(CARGO) test -p qfrefund-e2e --test cluster

## bench: qfrefund against bare apalis-redis in one run (release build); writes bench/RESULTS.md
bench: deps
	$(CARGO) build --release -p qfrefund -p qfrefund-bench
	$(CARGO_TARGET_DIR)/release/qfrefund-bench

## chaos: the full chaos suite (5 000 refunds, 4 workers, release build); prints one figure line
chaos: deps
	$(CARGO) build --release -p qfrefund
	QFREFUND_BIN=$(CARGO_TARGET_DIR)/release/qfrefund QFREFUND_CHAOS_M=$${QFREFUND_CHAOS_M:-5000} \
		QFREFUND_CHAOS_K=$${QFREFUND_CHAOS_K:-4} $(CARGO) test --release -p qfrefund-e2e --test chaos -- --nocapture

## fuzz: a short run (FUZZ_SECONDS each, default 30) of every fuzz target in tests/fuzz
# cargo-fuzz wants nightly flags; RUSTC_BOOTSTRAP lets a stable toolchain accept them.
# No sanitizer: the code under test forbids unsafe. A crash leaves its input in
# tests/fuzz/artifacts/<target>/ — add it as a regression test beside the code it broke.
FUZZ_SECONDS ?= 30
fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@cd tests/fuzz && for t in import_lines refund_json qfpay_responses; do \
		echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
		RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(CURDIR)/tests/fuzz/target $(CARGO) fuzz run --fuzz-dir . -s none $$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=4096 2>&1 | grep -E "^(Done|==|INFO: Seed)|panicked|crash-"; \
		[ "$${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz target $$t failed: see tests/fuzz/artifacts/$$t/"; exit 1; }; \
	done

# End-to-end suites run the real `qfrefund` binary.
bins:
	$(CARGO) build -p qfrefund

# Installs the Debian packages named in $$missing (as root, or through sudo), or says what to
# install by hand; used by run-deps and deps below.
INSTALL_MISSING = if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
			sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "error: cannot install without root or sudo: install the Debian packages$$missing" >&2; \
			echo "       (or point QFREFUND_REDIS_SERVER at a redis-server, QFREFUND_PG_BIN at PostgreSQL's bin directory)" >&2; \
			exit 1; \
		fi; \
	fi
# A redis-server is needed unless QFREFUND_REDIS_SERVER names one.
NEED_REDIS = { [ -n "$${QFREFUND_REDIS_SERVER:-}" ] || command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; }

## run-deps: what `make run` needs: a redis-server (unless QFREFUND_REDIS_URL names a running Redis)
run-deps: check-tools
	@missing=""; \
	[ -n "$${QFREFUND_REDIS_URL:-}" ] || $(NEED_REDIS); \
	$(INSTALL_MISSING)

## deps: what `make test` needs: redis-server and redis-cli (the Cluster suite), openssl (TLS tests),
## zstd (reading the archive), postgresql (the archive's database tests: initdb + pg_ctl, started by
## the harness), python3 with venv (the pinned deploy and API-contract tools), chromium and
## chromium-driver (the console's browser tests, headless), promtool (package prometheus: the
## alerts' and the dashboard's checks), and the Rust tools
deps: check-tools
	@missing=""; \
	$(NEED_REDIS); \
	command -v redis-cli >/dev/null 2>&1 || missing="$$missing redis-tools"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v zstd >/dev/null 2>&1 || missing="$$missing zstd"; \
	[ -x "$${QFREFUND_PG_BIN:-/nonexistent}/initdb" ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		command -v initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v python3 >/dev/null 2>&1 || missing="$$missing python3"; \
	python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	$(INSTALL_MISSING)
	@# Debian starts a system Redis on install where systemd runs; the project never relies on it.
	@"$${QFREFUND_REDIS_SERVER:-redis-server}" --version | head -n1

check-tools:
	@command -v $(CARGO) >/dev/null 2>&1 || { echo "error: cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || { echo "error: rustfmt missing: rustup component add rustfmt" >&2; exit 1; }
	@$(CARGO) clippy --version >/dev/null 2>&1 || { echo "error: clippy missing: rustup component add clippy" >&2; exit 1; }
