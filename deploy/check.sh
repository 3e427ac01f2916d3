#!/usr/bin/env bash
# Validates everything under deploy/ without Docker, a cluster or the network (after the first
# install): yamllint on every YAML file, strict Kubernetes schema validation of the manifests, the
# CRD objects' required fields, cross-checks between manifests, compose.yaml and the Dockerfile
# (deploy/check_manifests.py), hadolint on the Dockerfile, and promtool on the alerts and the
# Grafana dashboard (deploy/check_monitoring.py).
#
# The tools are pinned in deploy/requirements-check.txt and installed from PyPI into a virtualenv
# under ${CARGO_TARGET_DIR:-target}/deploy-venv, which later runs reuse (reinstalled when the
# requirements file changes). Exit 0 with one summary line, or 1 with every problem found.
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

# --- YAML style ----------------------------------------------------------------------------------
mapfile -t yamls < <(find deploy -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
[ "${#yamls[@]}" -gt 0 ] || die "no YAML files under deploy/"
if ! out="$("$BIN/yamllint" --strict --format parsable -c deploy/.yamllint.yaml "${yamls[@]}" 2>&1)"; then
	echo "$out" >&2
	die "yamllint found problems (rules: deploy/.yamllint.yaml)"
fi

# --- Dockerfile ----------------------------------------------------------------------------------
if ! out="$("$BIN/hadolint" --config deploy/.hadolint.yaml deploy/Dockerfile 2>&1)"; then
	echo "$out" >&2
	die "hadolint found problems in deploy/Dockerfile (settings: deploy/.hadolint.yaml)"
fi

# --- Kubernetes schemas, CRDs, cross-checks, compose ---------------------------------------------
if ! summary="$("$BIN/python" deploy/check_manifests.py --k8s "$K8S_VERSIONS")"; then
	die "the manifest checks above failed (deploy/check_manifests.py)"
fi

# --- Alerts and the dashboard (promtool) ---------------------------------------------------------
if ! monitoring="$("$BIN/python" deploy/check_monitoring.py)"; then
	die "the monitoring checks above failed (deploy/check_monitoring.py)"
fi

echo "deploy check: OK — yamllint ${#yamls[@]} files, hadolint deploy/Dockerfile, $summary, $monitoring ($((SECONDS - start)) s)"
