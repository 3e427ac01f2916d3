# Sourced by deploy/check.sh and deploy/check_api.sh: pinned Python tools, installed from PyPI into
# a virtualenv under ${CARGO_TARGET_DIR:-target} once and reused (reinstalled when the requirements
# file changes).
#
# deploy_venv WHO [REQUIREMENTS [NAME]]: prints the venv's bin directory; WHO names the caller in
# messages (stderr). Defaults: deploy/requirements-check.txt into deploy-venv. checkov pins older
# versions of shared dependencies, so it gets a venv of its own (deploy/requirements-checkov.txt).
deploy_venv() {
	local who="$1"
	local reqs="${2:-deploy/requirements-check.txt}"
	local target="${CARGO_TARGET_DIR:-target}"
	local venv="$target/${3:-deploy-venv}"
	local stamp="$venv/.requirements.sha256"
	local py="${PYTHON:-python3}"
	local want log
	want="$(sha256sum "$reqs" | cut -d' ' -f1)"
	if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
		if ! command -v "$py" >/dev/null 2>&1; then
			echo "$who: FAILED: python3 not found (install python3 and python3-venv)" >&2
			return 1
		fi
		echo "$who: installing the pinned tools ($reqs) into $venv" >&2
		rm -rf "$venv"
		mkdir -p "$target"
		if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
			echo "$who: FAILED: cannot create a virtualenv with $py (on Debian: apt-get install python3-venv)" >&2
			return 1
		fi
		if ! log="$("$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
			--timeout 30 --retries 2 --require-virtualenv -r "$reqs" 2>&1)"; then
			echo "$log" | tail -n 15 >&2
			rm -rf "$venv"
			echo "$who: FAILED: could not install the tools from PyPI (pip output above); this needs PyPI once, then runs offline" >&2
			return 1
		fi
		echo "$want" >"$stamp"
	fi
	echo "$venv/bin"
}
