import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startEmbeddedBroker, type EmbeddedBroker } from '../../deploy/oem-backend/embedded-broker.ts';
import { OemBackend } from '../../deploy/oem-backend/service.ts';
import { silentLogger } from '../../core/logger.ts';
import { derToPem } from '../../firmware/pki/cert.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { otaFixture, type OtaFixture } from './ota-fixtures.ts';
import { TpmLab } from './tpm-lab.ts';

/**
 * `evcc ota` opens the vehicle's trust as the runtime does (TPM-sealed, no bench key): a store written by
 * `evcc pki roots install` and a backend key installed by `evcc ota install-backend-key` (tagged) are what
 * `evcc ota sync-roots` reads, and what it writes `evcc pki roots list` reads back — one swtpm, one data dir.
 * Every root keeps the OEM approval it came with (factory file, root-list answer): after a reboot without a
 * measured boot the degraded view still verifies both with the release's backend key alone.
 */
const CLI_TEST_TIMEOUT_MS = 120_000; // 6 `evcc` processes (tsx start-up + TPM unseal) on a loaded 2-core machine

describeWith([tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('openssl')])('evcc ota with the TPM-sealed vehicle trust (swtpm)', () => {
  let lab: TpmLab;
  let fx: OtaFixture;
  let broker: EmbeddedBroker;
  let backend: OemBackend;

  beforeAll(async () => {
    lab = await TpmLab.create();
    fx = await otaFixture();
    expect((await lab.bootedVehicle()).created).toContain('runtime-secret');
    broker = await startEmbeddedBroker({});
    backend = new OemBackend({
      connector: new MqttJsConnector(), url: broker.url, protocolVersion: 4, clientId: 'oem-backend-tpm-trust', pool: fx.pool, signer: fx.signer,
      clock: new SystemClock(), log: silentLogger(),
    });
    await backend.start();
  });
  afterAll(async () => {
    await backend?.stop().catch(() => undefined);
    await broker?.close().catch(() => undefined);
    await fx?.cleanup();
    await lab?.close();
  });

  it('sync-roots reads the store pki roots install wrote and trusts the key install-backend-key tagged', async () => {
    await writeFile(join(lab.oemDir, 'root-a.pem'), derToPem(fx.pki.a.root.der));
    await writeFile(join(lab.oemDir, 'backend.pub.pem'), fx.signer.publicKeyPem);
    await writeFile(join(lab.oemDir, 'backend.key.pem'), fx.signerKeyPem, { mode: 0o600 });
    const approvals = join(lab.oemDir, 'approvals.json');
    await lab.cliOk(['pki', 'roots', 'approve', join(lab.oemDir, 'root-a.pem'), '--signing-key', join(lab.oemDir, 'backend.key.pem'), '--out', approvals]);
    await lab.cliOk(['pki', 'roots', 'install', join(lab.oemDir, 'root-a.pem'), '--approvals', approvals], { tpm: true });
    expect(await lab.cliOk(['ota', 'install-backend-key', join(lab.oemDir, 'backend.pub.pem')], { tpm: true })).toEqual({ keyId: fx.trust.keyId });
    expect((await readFile(join(lab.dataDir, 'ota/oem-backend-key.pem.tag'), 'utf8')).trim()).toMatch(/^[0-9a-f]{64}$/);

    // No --store-key-env: the integrity key comes from the TPM-sealed secret, as in `evcc charge`.
    const sync = await lab.cli(['ota', 'sync-roots', '--broker', broker.url, '--mqtt-version', '4', '--vehicle-id', 'tpm-ev-1'], { tpm: true });
    expect(sync.exitCode, sync.stderr).toBe(0);
    expect(sync.stderr).not.toMatch(/bench arrangement/);
    expect(JSON.parse(sync.stdout.trim().split('\n').pop()!)).toMatchObject({ installed: [fx.pki.b.root.cert.subject] });
    const listed = await lab.cliOk(['pki', 'roots', 'list'], { tpm: true }) as { subject: string; approvedBy: string | null }[];
    expect(listed.map((r) => [r.subject, r.approvedBy])).toEqual([[fx.pki.a.root.cert.subject, 'tpm-tagged'], [fx.pki.b.root.cert.subject, 'tpm-tagged']]);

    // next start without a measured boot: the TPM refuses the state, the OEM approvals still verify with the release's key
    await lab.reboot('orderly');
    const degraded = await lab.cli(['pki', 'roots', 'list', '--release-backend-key', join(lab.oemDir, 'backend.pub.pem')], { tpm: true });
    expect(degraded.exitCode, degraded.stderr).toBe(0);
    expect(degraded.stderr).toMatch(/degraded view \(KEYS_NOT_BOOTED\)/);
    expect((JSON.parse(degraded.stdout) as { subject: string; approvedBy: string }[]).map((r) => [r.subject, r.approvedBy]))
      .toEqual([[fx.pki.a.root.cert.subject, 'release'], [fx.pki.b.root.cert.subject, 'release']]);
  }, CLI_TEST_TIMEOUT_MS);
});
