/**
 * Public API of the OEM backend link and the root-CA fetch (Kilic 2023 Solution C), for the orchestrator
 * (firmware/evcc.ts), bin/commands/ota.ts and the bench session:
 * - `OtaLink` (link.ts): the vehicle's MQTT session (mTLS, QoS 1, retained state + last will) with `rootCaRpc` and
 *   `rootListRpc` (request/response with id and reply topic in the payload: MQTT 3.1.1 and 5).
 * - `OemRootFetcher` (root-fetch.ts): ask for the root the SECC chain ends in, verify the signed answer.
 * - `connectWithRootFetch` / `rootFetchBudget` (unknown-root.ts): TLS_UNKNOWN_ROOT → fetch → install → retry once,
 *   states ConnectTls → RootMissing → FetchRoot → InstallRoot → Retry → Established | Fallback (OTA_ROOT_UNAVAILABLE).
 * - `openTlsWithRootFetch` (tls-stage.ts): the same as the orchestrator's `openChannel` stage (budget from ctx).
 * - `syncRootList`, `RootSyncScheduler` (root-sync.ts): proactive full root-list sync while online.
 * - `rootStoreOf`, `validateSeccPath`, `unknownRootOf` (pki-adapter.ts): firmware/pki and firmware/tls bound to the ports.
 * - `loadBackendTrust`, `installBackendKey` (backend-key.ts): the OEM backend key installed at production.
 * - `OtaSettings` (settings.ts), error codes (errors.ts), topics and limits (constants.ts), wire format (messages.ts).
 */
export * from './errors.ts';
export * from './constants.ts';
export * from './messages.ts';
export * from './signing.ts';
export * from './ports.ts';
export * from './rpc.ts';
export * from './link.ts';
export * from './root-check.ts';
export * from './root-fetch.ts';
export * from './root-sync.ts';
export * from './unknown-root.ts';
export * from './tls-stage.ts';
export * from './pki-adapter.ts';
export * from './backend-key.ts';
export * from './settings.ts';
