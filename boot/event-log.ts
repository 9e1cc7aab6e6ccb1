/**
 * The measurement event log's parser and replay live in firmware/keys/event-log.ts (pure): the boot check and the OEM
 * backend's attestation verifier (deploy/) both judge the log, and deploy/ does not import boot/.
 */
export * from '../firmware/keys/event-log.ts';
