/**
 * Public API of the TPM key service (issue #5) for the session layer, OTA and the runtime's composition root.
 *
 *   const keys = await KeyService.open({ tpm, data, run, log }, { reclaim: true }); // runtime start, sole TPM user
 *   await keys.arm();                                   // before the challenge arrives (e.g. at PaymentDetailsRes)
 *   xmldsig.sign([authorizationReq], keys.contractKeySigner());   // one TPM2_Sign on the critical path
 *
 * Vehicle trust (runtime start, after KeyService.open): the TPM-sealed runtime secret → store integrity key + link-key passphrase
 *   const trust = await openVehicleTrust({ keys, data, log });   // throws KEYS_TRUST_UNAVAILABLE → refuse PnC, EIM only
 *   trust.store (CertificateStore), trust.linkKeyPassphrase (MqttTlsIdentity.passphrase), trust.backendTrust
 *
 * Boot side (boot/): checkMeasuredBoot (the initramfs measured; boot/README.md), installReleasePolicy (OTA: before the
 * reboot), commitRelease (A/B commit).
 */
export { KeyService, statePolicySteps, verifyRawSignature, type ImportedKey, type KeyServiceDeps, type KeyStatus, type KeysErrorCode } from './key-service.ts';
export { provisionTpm, backendExport, type ProvisionOptions, type ProvisionResult } from './provision.ts';
export { TpmSettings } from './settings.ts';
export { derToRaw, rawToDer } from './ecdsa.ts';
export { openVehicleTrust, BACKEND_KEY_TAG_PATH, type VehicleTrust, type VehicleTrustDeps, type VehicleTrustOptions, type VehicleTrustErrorCode } from './vehicle-trust.ts';
export { RuntimeSecret, TpmSealedIntegrity, unsealRuntimeSecret, createRuntimeSecret, RUNTIME_SECRET_PURPOSES, type RuntimeSecretPurpose } from './runtime-secret.ts';
