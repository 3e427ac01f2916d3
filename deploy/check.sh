#!/usr/bin/env bash
# Validates everything under deploy/ without Docker, a cluster or the network (after the first
# install): yamllint on every YAML file, ruff on deploy/*.py, hadolint on the Dockerfile, strict
# schema validation of the manifests (kubernetes-validate; the CRDs', the Kustomization's and
# compose.yaml's published schemas in deploy/schemas: deploy/check_schemas.py), checkov's security
# policy (deploy/.checkov.yaml), the project's own rules (deploy/check_manifests.py, and
# deploy/check_rules_fail.py showing each can fail), and promtool on the alerts and the Grafana
# dashboard (deploy/check_monitoring.py).
#
# The tools are pinned in deploy/requirements-check.txt and deploy/requirements-checkov.txt and
# installed from PyPI into virtualenvs under ${CARGO_TARGET_DIR:-target}, which later runs reuse
# (reinstalled when a requirements file changes). Exit 0 with one summary line, or 1 with every
# problem found.
#
# Environment: QFREFUND_K8S_VERSIONS (default "1.30,1.37": the oldest supported Kubernetes, which
# the preStop sleep action needs, and the newest kubernetes-validate bundles).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

die() {
	echo "deploy check: FAILED: $*" >&2
	exit 1
}

K8S_VERSIONS="${QFREFUND_K8S_VERSIONS:-1.30,1.37}"

# --- tools ---------------------------------------------------------------------------------------
. deploy/venv.sh
BIN="$(deploy_venv "deploy check")"
CHECKOV="$(deploy_venv "deploy check" deploy/requirements-checkov.txt deploy-venv-checkov)/checkov"

# --- YAML style ----------------------------------------------------------------------------------
mapfile -t yamls < <(find deploy -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
[ "${#yamls[@]}" -gt 0 ] || die "no YAML files under deploy/"
if ! out="$("$BIN/yamllint" --strict --format parsable -c deploy/.yamllint.yaml "${yamls[@]}" 2>&1)"; then
	echo "$out" >&2
	die "yamllint found problems (rules: deploy/.yamllint.yaml)"
fi

# --- Python (deploy/*.py) ------------------------------------------------------------------------
if ! out="$("$BIN/ruff" check --quiet --config deploy/ruff.toml deploy/*.py 2>&1 &&
	"$BIN/ruff" format --check --quiet --config deploy/ruff.toml deploy/*.py 2>&1)"; then
	echo "$out" >&2
	die "ruff found problems in deploy/*.py (fix: ruff format --config deploy/ruff.toml deploy/*.py)"
fi

# --- Dockerfile ----------------------------------------------------------------------------------
if ! out="$("$BIN/hadolint" --config deploy/.hadolint.yaml deploy/Dockerfile 2>&1)"; then
	echo "$out" >&2
	die "hadolint found problems in deploy/Dockerfile (settings: deploy/.hadolint.yaml)"
fi

# --- Schemas: Kubernetes (strict), the CRDs, the Kustomization, compose ---------------------------
if ! schemas="$("$BIN/python" deploy/check_schemas.py --k8s "$K8S_VERSIONS")"; then
	die "the schema checks above failed (deploy/check_schemas.py)"
fi

# --- Security policy: checkov on the manifests and the Dockerfile -------------------------------
if ! out="$("$CHECKOV" --config-file deploy/.checkov.yaml 2>&1)"; then
	echo "$out" >&2
	die "checkov found problems (settings and the checks skipped on purpose: deploy/.checkov.yaml)"
fi
policy="checkov $(grep -o 'Passed checks: [0-9]*' <<<"$out" | awk '{n += $3} END {print n}') checks passed"

# --- The project's own rules ----------------------------------------------------------------------
if ! rules="$("$BIN/python" deploy/check_manifests.py)"; then
	die "the project rules above failed (deploy/check_manifests.py)"
fi
if ! caught="$("$BIN/python" deploy/check_rules_fail.py)"; then
	die "a project rule did not refuse what it guards (deploy/check_rules_fail.py)"
fi

# --- Alerts and the dashboard (promtool) ---------------------------------------------------------
if ! monitoring="$("$BIN/python" deploy/check_monitoring.py)"; then
	die "the monitoring checks above failed (deploy/check_monitoring.py)"
fi

echo "deploy check: OK — yamllint ${#yamls[@]} files, ruff deploy/*.py, hadolint deploy/Dockerfile, $schemas, $policy, $rules ($caught), $monitoring ($((SECONDS - start)) s)"
