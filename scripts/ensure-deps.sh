#!/usr/bin/env bash
# Installs what the runtime, its simulators and its tests need on a fresh Debian 12 machine:
# Debian packages (only when a command is missing, and only as root) and the npm packages (when stale).
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
declare -A NEED=(
  [swtpm]=swtpm [swtpm_setup]=swtpm-tools [tpm2_startup]=tpm2-tools [mosquitto]=mosquitto
  [evse]=plc-utils-extra [pev]=plc-utils-extra [tshark]=tshark [ip]=iproute2 [rauc]=rauc
  [openssl]=openssl [xxd]=xxd [mksquashfs]=squashfs-tools [unsquashfs]=squashfs-tools [socat]=socat [kas]=kas
  [mkfs.ext4]=e2fsprogs [systemd-analyze]=systemd [systemd-tmpfiles]=systemd [nsenter]=util-linux [unshare]=util-linux
  [chromium]=chromium [tpm2-abrmd]=tpm2-abrmd [dbus-daemon]=dbus
)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
# libraries without a command: the tabrmd client TCTI (the tpm2-abrmd package does not pull it in, TPM.md pitfall 17)
ldconfig -p 2>/dev/null | grep 'libtss2-tcti-tabrmd\.so\.0' >/dev/null || missing+=(libtss2-tcti-tabrmd0)
# `rauc service` on a bus: rauc-service ships the D-Bus policy that lets it own de.pengutronix.rauc (no command)
[[ -e /usr/share/dbus-1/system.d/de.pengutronix.rauc.conf ]] || missing+=(rauc-service)
if ((${#missing[@]})); then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [[ $(id -u) -eq 0 ]]; then
    echo "ensure-deps: installing Debian packages: $pkgs" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  else
    echo "ensure-deps: missing Debian packages (run as root to install): $pkgs" >&2
  fi
fi

# npm packages: install when node_modules is missing or older than the lock file.
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "ensure-deps: installing npm packages" >&2
  npm ci --no-audit --no-fund >&2
fi
