/**
 * Public API of the vehicle PKI (used by firmware/tls, firmware/ota, bin/commands/pki.ts):
 * - `CertificateStore` (store.ts): open / listRoots / anchors / installRoot / removeRoot / OEM + contract chains,
 *   persisted atomically with an `IntegrityGuard` (`HmacIntegrity` for tests and the sim bench).
 * - `validateChain(presented, {anchors, now, purpose})` (validate.ts): our path validation; throws PKI_* errors,
 *   `UnknownRootError` (code PKI_UNKNOWN_ROOT) carrying issuerDn / authorityKeyId / presentedChain.
 * - `parseCert`, `pemToDerList`, `derToPem` (cert.ts); profiles and OIDs (profiles.ts).
 * - `generateTestPki`, `negativeSamples`, `chainsOf` (generate.ts): ISO 15118-2 TEST PKI for benches and tests.
 */
export * from './errors.ts';
export * from './profiles.ts';
export * from './cert.ts';
export * from './validate.ts';
export * from './store.ts';
