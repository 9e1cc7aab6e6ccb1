import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { UPDATE_RECORD, releaseBundle } from '../firmware/ota/update/after-boot.ts';
import { runUpdateAgent } from '../firmware/ota/update/agent.ts';
import { FsStore } from '../hal/store/fs-store.ts';
import { RaucRig } from '../test/support/rauc-rig.ts';
import { agentDeps, OemUpdateSide, VehicleJobs } from '../test/support/ota-update.ts';
import type { BenchReport } from './run.ts';
import { summarize } from './stats.ts';

/**
 * OTA update throughput (issue #10 Must show 9): the vehicle's update agent from a verified job to the reboot
 * request — HTTPS download from the OEM backend's bundle server, SHA-256, `rauc info` against the OEM keyring,
 * the release's policy ticket, RAUC InstallBundle over D-Bus with progress — against the peer `rauc install` of the
 * same bundle from a local file (RAUC's own client on the same service: signature check + slot write, no
 * download). Same rig as the tests: rauc service on a private system bus, file-backed ext4 slots, swtpm. The ratio
 * is what the agent's download and checks cost on top of RAUC's install.
 */
const N = 5;
const IMAGE_BYTES = 32 * 1024 * 1024;

export async function run(): Promise<BenchReport> {
  const rig = await RaucRig.create({ slotBytes: 2 * IMAGE_BYTES });
  const oem = await OemUpdateSide.create();
  try {
    await rig.factory();
    const v2 = await rig.release(2, { imageBytes: IMAGE_BYTES });
    const bytes = (await stat(v2.bundle)).size;
    const data = await FsStore.open(rig.dataDir);
    const agentMs: number[] = [];
    const raucMs: number[] = [];
    for (let i = 0; i < N; i++) {
      // the agent: job → download → verify → install → reboot hook (no reboot: the next round installs again)
      await data.remove(releaseBundle(2));
      await data.remove(UPDATE_RECORD);
      const jobs = new VehicleJobs();
      jobs.add(`bench-${i}`, await oem.job(`bench-${i}`, v2));
      const installer = await rig.installer();
      try {
        const deps = await agentDeps(rig, oem, jobs, await rig.slotDeps(installer));
        const t0 = performance.now();
        const o = await runUpdateAgent(deps);
        agentMs.push(performance.now() - t0);
        if (o.status !== 'rebooting') throw new Error(`agent pass ended ${JSON.stringify(o)}`);
      } finally {
        await installer.close();
      }
      // the peer: RAUC's own client installs the same bundle into the same slot
      const t1 = performance.now();
      await execa('rauc', ['install', v2.bundle], { env: { DBUS_SYSTEM_BUS_ADDRESS: rig.busAddress } });
      raucMs.push(performance.now() - t1);
    }
    const a = summarize(agentMs);
    const r = summarize(raucMs);
    const mbps = (ms: number) => bytes / 1e6 / (ms / 1000);
    return {
      title: `OTA update: agent (download + verify + install over D-Bus) vs rauc install, ${(bytes / 1e6).toFixed(1)} MB bundle`,
      rows: [
        { name: 'agent: job → reboot request', ...a, unit: 'ms' },
        { name: 'rauc install (local file, same service)', ...r, unit: 'ms' },
        { name: 'agent throughput', median: mbps(a.median), unit: 'MB/s' },
        { name: 'rauc install throughput', median: mbps(r.median), unit: 'MB/s' },
        { name: 'ratio agent / rauc install', median: a.median / r.median, unit: 'x' },
      ],
      notes: [`bundle ${bytes} bytes, ext4 rootfs image ${IMAGE_BYTES} bytes of payload; slots are files on ${join(rig.dir, 'slots')} (page cache, not an SD card)`],
    };
  } finally {
    await oem.close();
    await rig.close();
  }
}
