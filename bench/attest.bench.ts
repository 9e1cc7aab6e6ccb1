import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { quote } from '../firmware/keys/attestation-key.ts';
import { DATA, parseJson, ProvisioningRecord } from '../firmware/keys/layout.ts';
import { FsStore } from '../hal/store/fs-store.ts';
import { startMosquitto } from '../test/support/mosquitto.ts';
import { backendFor, linkKeyFromTrust, registerAtProduction, releaseClaim, startVehicle } from '../test/integration/ota-attest-rig.ts';
import { TpmLab } from '../test/integration/tpm-lab.ts';
import type { BenchReport } from './run.ts';
import { summarize } from './stats.ts';

/**
 * Attestation round trip (issue #10 Must show 9): the backend's fresh challenge → the vehicle's TPM2_Quote over
 * PCR 14 with the attestation key (swtpm, through the product's driver) → MQTT over mTLS (real mosquitto) → the
 * backend's verification and persisted verdict. Floor: one bare `tpm2_quote` process on the already loaded key —
 * the part no software around it can remove. swtpm answers in µs, so on the Pi the TPM's ECDSA adds to both.
 */
const N = 20;

export async function run(): Promise<BenchReport> {
  const lab = await TpmLab.create();
  const broker = await startMosquitto();
  const backend = await backendFor(broker, { ttlMs: 20_000 });
  const scratch = await mkdtemp(join(tmpdir(), 'evcc-attest-bench-'));
  const vid = 'bench-ev-1';
  let vehicle: Awaited<ReturnType<typeof startVehicle>> | undefined;
  try {
    await lab.bootedVehicle();
    const v1 = join(lab.oemDir, 'v1.raucb');
    const data = await FsStore.open(lab.dataDir);
    const record = parseJson(ProvisioningRecord, await data.read(DATA.record), 'record', 'KEYS_NOT_PROVISIONED');
    await registerAtProduction(backend.registry, lab, vid);
    const linkKey = await linkKeyFromTrust(lab, broker, vid);
    let from = backend.records.length;
    vehicle = await startVehicle(lab, broker, { vehicleId: vid, encryptedKeyPem: linkKey, claim: () => releaseClaim(lab, v1) });
    const first = await backend.next(vid, from);
    if (first.state !== 'trusted') throw new Error(`bench vehicle not trusted: ${first.state}`);

    const roundTrip: number[] = [];
    for (let i = 0; i < N; i++) {
      from = backend.records.length;
      const t = performance.now();
      await backend.service.challenge(vid);
      const s = await backend.next(vid, from);
      roundTrip.push(performance.now() - t);
      if (s.state !== 'trusted') throw new Error(`round ${i}: ${s.state} ${s.lastRefusal?.code ?? ''}`);
    }

    // floor: tpm2_quote alone, on the key context the product loaded (no load, no flush, no MQTT, no verification)
    const tpm = await lab.driver();
    await quote({ tpm, data }, record, new Uint8Array(16), [14]); // loads the AK: its context stays in the run dir
    const ctx = join(lab.runDir, 'tpm', 'ctx', 'attestation-key.ctx');
    const floor: number[] = [];
    for (let i = 0; i < N; i++) {
      const t = performance.now();
      await execa('tpm2_quote', ['-c', ctx, '-l', 'sha256:14', '-q', '00112233445566778899aabbccddeeff', '-g', 'sha256', '-m', join(scratch, 'm'), '-s', join(scratch, 's'), '-f', 'plain', '-o', join(scratch, 'p')],
        { env: { TPM2TOOLS_TCTI: lab.tcti } });
      floor.push(performance.now() - t);
      await execa('tpm2_flushcontext', ['-t'], { env: { TPM2TOOLS_TCTI: lab.tcti } }); // no resource manager: the tool's transient copy
    }
    const rt = summarize(roundTrip);
    const fl = summarize(floor);
    return {
      title: 'attestation round trip (challenge → TPM2_Quote on swtpm → mosquitto mTLS → verified verdict)',
      rows: [
        { name: 'round trip: nonce sent → verdict recorded', unit: 'ms', ...rt },
        { name: 'floor: bare tpm2_quote (key loaded)', unit: 'ms', ...fl },
        { name: 'ratio round trip / floor (median)', unit: 'x', median: rt.median / fl.median },
      ],
      notes: ['Round trip includes the driver\'s deferred flush of the previous quote, two MQTT hops (QoS 1), the state-file read/write and ECDSA verification.'],
    };
  } finally {
    await vehicle?.close().catch(() => undefined);
    await backend.close().catch(() => undefined);
    await broker.stop().catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
    await lab.close();
  }
}
