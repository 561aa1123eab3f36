#!/usr/bin/env bash
# Sets up everything hft needs on a fresh Debian machine (run as root from anywhere):
# the zh_CN.GB18030 locale openctp-ctp needs at import, python3-venv where the Python lacks
# venv, Prometheus and Alertmanager (the tests check ops/prometheus with promtool and a real
# server, and send the watchdog's alerts to a real Alertmanager), the tools
# the tests of the TLS and ops files run (openssl, logrotate, systemd-analyze), and the
# virtual environment .venv with hft and its Python dependencies.
# Idempotent: a second run only checks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python=${PYTHON:-python3}
apt_packages=()
locale -a 2>/dev/null | grep -qi '^zh_CN\.gb18030$' || apt_packages+=(locales)
"$python" -c "import ensurepip, venv" 2>/dev/null || apt_packages+=(python3-venv)
command -v openssl >/dev/null || apt_packages+=(openssl)  # the TLS /metrics tests make certificates
command -v promtool >/dev/null || apt_packages+=(prometheus)  # ops/prometheus is tested with it
command -v prometheus-alertmanager >/dev/null || apt_packages+=(prometheus-alertmanager)  # webhook test
command -v logrotate >/dev/null || apt_packages+=(logrotate)  # the tests rotate a live daemon's log
command -v systemd-analyze >/dev/null || apt_packages+=(systemd)  # the tests verify the unit file
if [ ${#apt_packages[@]} -gt 0 ]; then
    echo "setup: installing ${apt_packages[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # no recommends: prometheus's (node-exporter) would take the watchdog's port 9100
    apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
fi
if ! locale -a 2>/dev/null | grep -qi '^zh_CN\.gb18030$'; then
    echo "setup: making the zh_CN.GB18030 locale (openctp-ctp aborts at import without it)"
    localedef -c -f GB18030 -i zh_CN zh_CN.GB18030
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($python --version)"
    "$python" -m venv .venv
fi
echo "setup: installing hft and its dependencies into .venv (log: .venv/setup.log)"
pip_install() {
    if ! .venv/bin/python -m pip install --disable-pip-version-check -q "$@" >>.venv/setup.log 2>&1; then
        tail -n 30 .venv/setup.log >&2
        echo "setup: pip install $* failed (whole log: .venv/setup.log)" >&2
        exit 1
    fi
}
: >.venv/setup.log
pip_install -e ".[dev,bench]"
# The benchmark peer vn.py: its EventEngine and BarGenerator need only the standard library,
# numpy and talib (the bench extra), so its declared dependency tree (Qt, pandas, ...) is
# not installed; an extra cannot say --no-deps, hence this separate step.
pip_install --no-deps "vnpy==4.5.0"
echo "setup: done (.venv/bin/hftctl --help)"
