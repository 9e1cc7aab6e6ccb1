#!/bin/sh
# RAUC 1.8 custom bootloader backend of the bench (system.conf: bootloader=custom, [handlers]
# bootloader-custom-backend=this script), standing in for the Pi's U-Boot with meta-rauc(-community)'s boot script:
# the same variables in one state file instead of the U-Boot environment — BOOT_ORDER (bootnames, first = primary)
# and BOOT_<name>_LEFT (tries left). Semantics as RAUC's U-Boot backend: a slot is good while it is in BOOT_ORDER
# with tries left; set-primary puts it first with fresh tries; bad removes it. The rig's simulated boot loader
# (test/support/rauc-rig.ts) reads the same file, boots the first slot of BOOT_ORDER with tries left and takes one.
#   rauc-bootloader.sh get-primary | set-primary NAME | get-state NAME | set-state NAME good|bad
# State file: $EVCC_RAUC_BOOT_STATE, else bootloader.env next to system.conf's data (the rig sets it).
set -eu
STATE=${EVCC_RAUC_BOOT_STATE:?EVCC_RAUC_BOOT_STATE not set}
TRIES=3
get() { sed -n "s/^$1=//p" "$STATE"; }
order() { get BOOT_ORDER; }
left() { v=$(get "BOOT_$1_LEFT"); echo "${v:-0}"; }
# Atomic replace (a power loss leaves the old or the new environment, as U-Boot's redundant env does).
put() {
	tmp="$STATE.$$"
	{ grep -v -e "^$1=" "$STATE" || true; echo "$1=$2"; } >"$tmp"
	mv -f "$tmp" "$STATE"
}
without() { for s in $(order); do [ "$s" = "$1" ] || printf '%s ' "$s"; done; }
case ${1:-} in
get-primary)
	for s in $(order); do
		[ "$(left "$s")" -gt 0 ] && { echo "$s"; exit 0; }
	done
	echo 'no bootable slot' >&2; exit 1 ;;
set-primary)
	put BOOT_ORDER "$(echo "$2 $(without "$2")" | sed 's/ *$//')"
	put "BOOT_$2_LEFT" "$TRIES" ;;
get-state)
	case " $(order) " in *" $2 "*) [ "$(left "$2")" -gt 0 ] && { echo good; exit 0; } ;; esac
	echo bad ;;
set-state)
	case $3 in
	good)
		case " $(order) " in *" $2 "*) ;; *) put BOOT_ORDER "$(echo "$(order) $2" | sed 's/^ *//')" ;; esac
		put "BOOT_$2_LEFT" "$TRIES" ;;
	bad)
		put BOOT_ORDER "$(without "$2" | sed 's/ *$//')"
		put "BOOT_$2_LEFT" 0 ;;
	*) exit 1 ;;
	esac ;;
*) echo "usage: $0 get-primary|set-primary NAME|get-state NAME|set-state NAME good|bad" >&2; exit 2 ;;
esac
