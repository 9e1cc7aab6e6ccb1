import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { KeyService } from '../firmware/keys/key-service.ts';
import { openVehicleTrust } from '../firmware/keys/vehicle-trust.ts';
import { CertificateStore } from '../firmware/pki/store.ts';
import { generateTestPki } from '../firmware/pki/generate.ts';
import { TpmLab } from '../test/integration/tpm-lab.ts';
import type { BenchReport } from './run.ts';
import { summarize } from './stats.ts';

/**
 * Runtime start-up cost of the vehicle trust on swtpm through the product: openVehicleTrust = unseal the TPM-sealed
 * runtime secret through the state policy (tpm2-tools processes, counted) + verify the certificate store with the
 * derived key. Once per runtime start, not on a charging session's critical path. swtpm answers in µs: the TPM part
 * is almost pure process-spawn cost (TPM.md §6); re-measure on the Pi with its SPI TPM.
 */
const N = 15;

export async function run(): Promise<BenchReport> {
  const lab = await TpmLab.create();
  try {
    await lab.bootedVehicle(); // provisioned, v1 booted, runtime secret sealed
    const pki = await generateTestPki();
    {
      const deps = await lab.deps();
      const keys = await KeyService.open(deps);
      const t = await openVehicleTrust({ keys, data: deps.data, log: deps.log });
      for (const root of [pki.a.root, pki.b.root]) await t.store.installRoot(root.der, { source: 'factory' });
      await keys.close();
    }
    const open: number[] = [];
    const procs: number[] = [];
    const verify: number[] = [];
    const floor: number[] = [];
    const env = { TPM2TOOLS_TCTI: lab.tcti };
    for (let i = 0; i < N; i++) {
      const deps = await lab.deps();
      const keys = await KeyService.open(deps);
      const before = deps.tpm.spawnCount;
      let t = performance.now();
      const trust = await openVehicleTrust({ keys, data: deps.data, log: deps.log });
      open.push(performance.now() - t);
      procs.push(deps.tpm.spawnCount - before);
      await keys.close();
      // the software part alone: verify the same store with its (derived) key
      t = performance.now();
      await CertificateStore.open(deps.data, { integrity: trust.integrity });
      verify.push(performance.now() - t);
      t = performance.now();
      await execa('tpm2_getrandom', ['8', '-o', '/dev/null'], { env, stdin: 'ignore' });
      floor.push(performance.now() - t);
    }
    const o = summarize(open);
    const f = summarize(floor);
    return {
      title: `Vehicle trust at runtime start (swtpm, ${N} cold opens: new key service and driver each)`,
      rows: [
        { name: 'openVehicleTrust (unseal via state policy + store verify)', ...o, unit: 'ms' },
        { name: 'tpm2-tools processes per open', ...summarize(procs), unit: 'proc' },
        { name: 'store verify alone (2 roots, HMAC + parse)', ...summarize(verify), unit: 'ms' },
        { name: 'one tpm2-tools process (tpm2_getrandom), interleaved', ...f, unit: 'ms' },
        { name: 'open / one process (ratio of medians)', median: o.median / f.median, unit: 'x' },
      ],
      notes: ['Once per runtime start; a charging session never waits for it.'],
    };
  } finally {
    await lab.close();
  }
}
