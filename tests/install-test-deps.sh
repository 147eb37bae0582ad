#!/usr/bin/env bash
# Install what the test suite needs on a fresh Debian/Ubuntu machine: the real
# Prometheus and VictoriaMetrics binaries (tests query through real servers), Chromium
# (the landing page and the review are checked in a real browser), a C compiler, podman,
# runc and debootstrap (the container image is built and run for real), and a
# virtualenv with this project installed in editable mode. Safe to re-run.
#
# Env: LLMCOST_VENV  virtualenv location (default: .venv in the repo root)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${LLMCOST_VENV:-.venv}"

say() { printf 'install-test-deps: %s\n' "$*"; }
die() { printf 'install-test-deps: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# --- system packages ---------------------------------------------------------
apt_pkgs=()
if ! have prometheus || ! have promtool; then
  apt_pkgs+=(prometheus)
fi
have prometheus-alertmanager || have alertmanager || apt_pkgs+=(prometheus-alertmanager)
have prometheus-node-exporter || have node_exporter || apt_pkgs+=(prometheus-node-exporter)
# The fleet tests prove the rules, the review and the dashboards on a second backend.
{ have victoria-metrics && have vmalert; } || apt_pkgs+=(victoria-metrics)
have gcc || apt_pkgs+=(gcc)
# The browser tests drive Debian's own Chromium headless over the DevTools protocol.
[[ -x /usr/bin/chromium ]] || apt_pkgs+=(chromium)
# systemd-analyze checks the systemd unit (no systemd needs to run).
have systemd-analyze || apt_pkgs+=(systemd)
# The image tests: podman with runc (apt would otherwise pick crun, which refuses
# some container hosts' cgroup setup), and debootstrap for the local base image.
have podman || apt_pkgs+=(podman)
have runc || [[ -x /usr/sbin/runc ]] || apt_pkgs+=(runc)
have debootstrap || [[ -x /usr/sbin/debootstrap ]] || apt_pkgs+=(debootstrap)
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || apt_pkgs+=(debian-archive-keyring)
if ! have python3; then
  apt_pkgs+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt_pkgs+=(python3-venv)
fi

if ((${#apt_pkgs[@]})); then
  have apt-get || die "missing ${apt_pkgs[*]} and apt-get is not available; install them manually"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    have sudo || die "need root or sudo to install: ${apt_pkgs[*]}"
    SUDO="sudo"
  fi

  # Without systemd (containers), package postinst scripts would otherwise start
  # prometheus/node_exporter/alertmanager as background daemons via init.d.
  # A temporary policy-rc.d (the standard Debian mechanism) prevents that.
  if [[ ! -d /run/systemd/system && ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi

  say "installing apt packages: ${apt_pkgs[*]}"
  # Another apt or dpkg run (an unattended upgrade) holds the lock: wait for it.
  apt_wait=(-o DPkg::Lock::Timeout=600)
  $SUDO apt-get "${apt_wait[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${apt_wait[@]}" install -y -qq \
    --no-install-recommends "${apt_pkgs[@]}" >/dev/null
else
  say "system packages present (prometheus, promtool, alertmanager, node-exporter," \
    "victoria-metrics, chromium, gcc, python3-venv, podman, runc, debootstrap)"
fi

have prometheus && have promtool || die "prometheus/promtool still not on PATH after install"
say "prometheus: $(prometheus --version 2>&1 | head -n1)"
if have pgrep && pgrep -x prometheus >/dev/null 2>&1; then
  say "note: a system prometheus service is running; tests start their own on free ports"
fi

# --- virtualenv ----------------------------------------------------------------
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "python3 >= 3.10 required, found $(python3 --version 2>&1)"

if [[ -x "$VENV/bin/python" ]]; then
  say "using existing venv $VENV"
else
  python3 -m venv "$VENV"
  say "created venv $VENV"
fi
PY="$VENV/bin/python"

# Editable installs of pyproject-only projects need pip >= 21.3 (PEP 660).
if ! "$PY" -c 'import pip, sys; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (21, 3))'
then
  "$PY" -m pip install -q --disable-pip-version-check --upgrade pip
fi

# Skip pip when nothing dependency-relevant changed since the last install.
stamp="$VENV/.llmcost-test-deps"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$PY" -V 2>&1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$VENV/bin/pytest" && -x "$VENV/bin/ruff" ]]
then
  say "python deps up to date (pyproject.toml unchanged)"
else
  "$PY" -m pip install -q --disable-pip-version-check -e '.[test]'
  printf '%s\n' "$want" >"$stamp"
  say "installed project with [test] extras into $VENV"
fi
