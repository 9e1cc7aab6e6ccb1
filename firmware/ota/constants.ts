/**
 * Timers, limits and topic layout of the OEM backend link (ARCHITECTURE.md §4). The root-CA fetch runs inside the
 * ISO 15118-2 communication-setup budget (V2G_EVCC_CommunicationSetup_Timeout, 20 s, firmware/session/timers.ts), so its own
 * budget is drawn from what is left of it (unknown-root.ts rootFetchBudget).
 */

/**
 * Time kept back after the fetch for what must still follow inside the setup budget: the TLS retry (~5 ms on a
 * link, allow 500 ms), SupportedAppProtocol and SessionSetup (V2G_EVCC_Msg_Timeout 2 s each, PROTOCOLS.md §6).
 */
export const OTA_RESERVE_AFTER_FETCH_MS = 4_500;

/** Upper bound of one root-CA fetch even when more setup time is left (a silent backend must not eat it all). */
export const OTA_ROOT_FETCH_MAX_MS = 8_000;

/** A root-CA answer carries one certificate (< 2 KiB DER); anything much larger is hostile. */
export const OTA_MAX_ROOT_ANSWER_BYTES = 16 * 1024;
/** The full root list (proactive sync) is bounded by the store's root limit; 64 KiB leaves room for ~40 roots. */
export const OTA_MAX_ROOT_LIST_BYTES = 64 * 1024;
/** The request the backend accepts (issuer DN + AKI + nonce + ids). */
export const OTA_MAX_REQUEST_BYTES = 4 * 1024;
export const OTA_MAX_DN_CHARS = 1024;
export const OTA_MAX_ROOTS_PER_LIST = 64;

/** Request ids of completed requests remembered to classify a late or replayed answer (bounded). */
export const OTA_RECENT_REQUEST_IDS = 64;

/**
 * A request without an answer is published again (same id and nonce) at this interval until its deadline: a
 * request that reached the broker while the backend was between sessions is otherwise lost. The backend's
 * answers are idempotent and the vehicle takes the first valid one: an answer that fails a check anybody on the
 * reply topic could fail (shape, nonce, signer, signature) is refused and the fetch waits on (root-fetch.ts).
 */
export const OTA_REQUEST_REPUBLISH_MS = 1_500;

/** Period of the proactive full root-list sync while online. */
export const OTA_ROOT_SYNC_INTERVAL_MS = 24 * 3600_000;

export const OTA_TOPIC_PREFIX = 'evcc/v1';

/** Per-vehicle topics; a broker ACL confines each vehicle to its own prefix. */
export function vehicleTopics(vehicleId: string) {
  const base = `${OTA_TOPIC_PREFIX}/${vehicleId}`;
  return {
    base,
    rootCaRequest: `${base}/pki/rootca/req`,
    rootCaResponse: `${base}/pki/rootca/resp`,
    rootListRequest: `${base}/pki/roots/req`,
    rootListResponse: `${base}/pki/roots/resp`,
    state: `${base}/state`,
  };
}

/** Filters the OEM backend subscribes to (every vehicle). */
export const BACKEND_FILTERS = {
  rootCaRequest: `${OTA_TOPIC_PREFIX}/+/pki/rootca/req`,
  rootListRequest: `${OTA_TOPIC_PREFIX}/+/pki/roots/req`,
  state: `${OTA_TOPIC_PREFIX}/+/state`,
};

/**
 * Shared-subscription group of the OEM backend instances (MQTT 5 §4.8.2; mosquitto also honours it on 3.1.1): the
 * broker hands each vehicle message to ONE member of the group, so instances scale out on any broker or cluster
 * (mosquitto, EMQX, HiveMQ, VerneMQ) without code changes. deploy/oem-backend/README.md "Scaling out".
 */
export const BACKEND_SHARE_GROUP = 'evcc-oem-backend';
/** A share name is one topic level: no `/`, no wildcards (MQTT 5 §4.8.2), no spaces. */
export const SHARE_GROUP_PATTERN = /^[^/+#\s]{1,64}$/;
/** Pause between the OEM backend services' reconnect attempts to the broker (root-CA service, attestation verifier). */
export const BACKEND_RECONNECT_PERIOD_MS = 1_000;

export const VEHICLE_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
