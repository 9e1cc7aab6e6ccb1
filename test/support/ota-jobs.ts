import { isEvccError } from '../../core/errors.ts';
import { SIGNED_POLICY_FORMAT } from '../../firmware/keys/signed-policy.ts';

/**
 * A release's signed state policy of the right shape for tests of the job layer (job documents carry it; its
 * signature and TPM-side checks are installReleasePolicy's, tested against swtpm in boot/ and the RAUC tests).
 */
export function testReleasePolicy(version: number, bundleSha256: string, compatible = 'evcc-rpi4') {
  return {
    format: SIGNED_POLICY_FORMAT, version, bundle: { sha256: bundleSha256, compatible },
    rootfs: { sha256: 'cd'.repeat(32), size: 4096 }, pcrs: { bank: 'sha256', index: 14, value: 'ef'.repeat(32) },
    nv: { index: 0x1500016, name: `000b${'12'.repeat(32)}`, operation: 'UNSIGNED_LE', operandB: version.toString(16).padStart(16, '0') },
    policy: '34'.repeat(32), policyRef: '4556', key: { name: `000b${'56'.repeat(32)}`, fingerprint: '78'.repeat(32) }, signature: 'MEUCIQ==',
  };
}

/** The typed error code a promise rejects with, or 'OK' when it resolves (a foreign error is rethrown). */
export async function errorCodeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    if (isEvccError(err)) return err.code;
    throw err;
  }
  return 'OK';
}
