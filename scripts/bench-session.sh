#!/usr/bin/env bash
# The main job: one full simulated bench session (plug-in -> SLAC -> SDP -> TLS (-> root-CA fetch) -> session)
# on the embedded default: simulated modem, charger, pilot and OEM backend, no hardware and no root needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
exec npx tsx bin/evcc.ts bench-session "$@"
