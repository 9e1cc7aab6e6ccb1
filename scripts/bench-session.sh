#!/usr/bin/env bash
# The main job: one full simulated bench session (vehicle TPM on swtpm: provisioning, measured boot, contract key ->
# plug-in -> SLAC -> SDP -> TLS (-> root-CA fetch) -> session -> contract-key signature, A/B commit) on the embedded
# default: swtpm, simulated modem, charger, pilot and OEM backend, no hardware and no root needed (--no-tpm: no TPM).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
exec npx tsx bin/evcc.ts bench-session "$@"
