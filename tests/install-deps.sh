#!/usr/bin/env bash
# Installs every system package calfwd's tests, demo, benchmarks and RPM build need.
# Debian 12 (apt) or Fedora/RHEL (dnf). Idempotent: does nothing when all are present.
# Packages must not start daemons on the host: firewalld belongs in test namespaces only.
set -euo pipefail

# The Ansible role's test (tests/integration/test_ansible_role.py): ansible-core and ansible-lint
# from PyPI, pinned, in a venv of their own (Debian's system pip is externally managed).
# ansible-core 2.19 needs Python >= 3.11 on the controller.
ANSIBLE_VENV=${CALFWD_ANSIBLE_VENV:-/opt/calfwd-ansible}
ANSIBLE_PINS=(ansible-core==2.19.14 ansible-lint==26.10.1)

ansible_venv() {  # $1: the Python to build it with; does nothing when it is there at the pins
  if "$ANSIBLE_VENV/bin/python" -m pip freeze 2>/dev/null | grep -qx "${ANSIBLE_PINS[0]}" &&
     "$ANSIBLE_VENV/bin/python" -m pip freeze 2>/dev/null | grep -qx "${ANSIBLE_PINS[1]}"; then
    return 0
  fi
  echo "install-deps: ${ANSIBLE_PINS[*]} into $ANSIBLE_VENV"
  "$1" -m venv "$ANSIBLE_VENV"
  "$ANSIBLE_VENV/bin/python" -m pip install -q --disable-pip-version-check "${ANSIBLE_PINS[@]}"
}

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: run as root (the tests need network namespaces)" >&2
  exit 1
fi

if command -v apt-get >/dev/null 2>&1; then
  pkgs=(firewalld nftables iptables ipset iproute2 dbus procps
        python3 python3-nftables python3-dbus python3-gi python3-systemd python3-tomli
        python3-pytest python3-hypothesis mypy systemd rpm rpmlint debootstrap
        man-db groff-base cpio apt dpkg debian-archive-keyring wireguard-tools wireguard-go
        prometheus-node-exporter prometheus  # node_exporter and promtool (the metrics lab test)
        python3-venv)  # the Ansible venv (ansible_venv above)
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    ansible_venv /usr/bin/python3
    exit 0
  fi
  echo "install-deps: installing ${missing[*]}"
  # Keep maintainer scripts from starting firewalld or dbus in the root namespace.
  guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' > "$guard"
    chmod +x "$guard"
  fi
  trap '[[ -n "$guard" ]] && rm -f "$guard"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  ansible_venv /usr/bin/python3
elif command -v dnf >/dev/null 2>&1; then
  pkgs=(firewalld nftables iptables-nft ipset iproute dbus-daemon procps-ng
        python3 python3-nftables python3-dbus python3-gobject-base python3-systemd
        python3-pytest systemd rpm-build rpmlint python3-devel systemd-rpm-macros
        man-db groff-base cpio wireguard-tools)
  if ! /usr/bin/python3 -c 'import tomllib' 2>/dev/null; then pkgs+=(python3-tomli); fi
  # ansible-core 2.19 needs Python >= 3.11: RHEL 9's /usr/bin/python3 is 3.9, its python3.12 fits.
  ansible_python=/usr/bin/python3
  if ! /usr/bin/python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    ansible_python=/usr/bin/python3.12
    pkgs+=(python3.12 python3.12-pip)
  fi
  if rpm -q "${pkgs[@]}" >/dev/null 2>&1 && /usr/bin/python3 -c 'import hypothesis, mypy' 2>/dev/null; then
    ansible_venv "$ansible_python"
    exit 0
  fi
  dnf install -y "${pkgs[@]}"
  # Hypothesis and debootstrap (the real-systemd test's Debian root) are in Fedora; on RHEL
  # they come from EPEL.
  dnf install -y python3-hypothesis 2>/dev/null || /usr/bin/python3 -m pip install hypothesis
  # mypy (`make unit`, `make test`: the drivers' protocols): Fedora's python3-mypy; RHEL has none.
  dnf install -y python3-mypy 2>/dev/null || /usr/bin/python3 -m pip install mypy
  dnf install -y debootstrap 2>/dev/null ||
    echo "install-deps: no debootstrap package (enable EPEL on RHEL): tests/integration/test_real_systemd.py needs it" >&2
  # The lab fetches Debian's firewalld 0.9.3/1.3/2.3 packages with apt-get and dpkg-deb.
  dnf install -y apt dpkg debian-keyring 2>/dev/null ||
    echo "install-deps: no apt/dpkg/debian-keyring packages: tests/integration/test_firewalld_versions.py needs them" >&2
  # node_exporter and promtool (Fedora's golang-github-prometheus; on RHEL node_exporter is in EPEL).
  dnf install -y golang-github-prometheus-node-exporter golang-github-prometheus 2>/dev/null ||
    echo "install-deps: no node_exporter/promtool packages: tests/integration/test_metrics_in_lab.py needs them" >&2
  ansible_venv "$ansible_python"
else
  echo "install-deps: neither apt-get nor dnf found; install the packages listed in README.md" >&2
  exit 1
fi
