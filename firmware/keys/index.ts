/**
 * Public API of the TPM key service (issue #5) for the session layer, OTA and the runtime's composition root.
 *
 *   const keys = await KeyService.open({ tpm, data, run, log }, { reclaim: true }); // runtime start, sole TPM user
 *   await keys.arm();                                   // before the challenge arrives (e.g. at PaymentDetailsRes)
 *   xmldsig.sign([authorizationReq], keys.contractKeySigner());   // one TPM2_Sign on the critical path
 *
 * Boot side (boot/): measuredBoot, installReleasePolicy (OTA: before the reboot), commitRelease (A/B commit).
 */
export { KeyService, statePolicySteps, verifyRawSignature, type ImportedKey, type KeyServiceDeps, type KeyStatus, type KeysErrorCode } from './key-service.ts';
export { provisionTpm, backendExport, type ProvisionOptions, type ProvisionResult } from './provision.ts';
export { TpmSettings } from './settings.ts';
export { derToRaw, rawToDer } from './ecdsa.ts';
