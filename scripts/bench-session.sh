#!/usr/bin/env bash
# The main job: one full simulated bench session (vehicle TPM on swtpm: provisioning, measured boot, contract key ->
# plug-in -> SLAC -> SDP -> TLS (-> root-CA fetch) -> session -> contract-key signature, A/B commit) on the embedded
# default: swtpm, simulated modem, charger, pilot and OEM backend, no hardware and no root needed (--no-tpm: no TPM).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
# One process, no wrapper in between: after exec this script's PID is the session itself, so SIGTERM/SIGINT to it
# stops the session (swtpm, data dir) and SIGKILL takes swtpm down with it (issue #13 item 8). `npx tsx` would put
# npx and the tsx CLI in front of it, which neither forward SIGKILL nor always wait for the child. tsx as an import
# hook without its transpiler cache: a cache dir shared under /tmp could be pre-seeded by another user (item 2).
export TSX_DISABLE_CACHE=1
exec node --import tsx bin/evcc.ts bench-session "$@"
