import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { backendExport, provisionTpm } from '../../firmware/keys/provision.ts';
import { quote } from '../../firmware/keys/attestation-key.ts';
import { DATA, parseJson, ProvisioningRecord } from '../../firmware/keys/layout.ts';
import { attestationTopics, AttestationChallenge, ATTESTATION_FILTERS } from '../../firmware/ota/attestation.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import { describeWith, tool } from '../support/prereq.ts';
import { OEM_BACKEND_USER, startMosquitto, type MosquittoBroker } from '../support/mosquitto.ts';
import { until } from '../support/until.ts';
import { backendFor, linkKeyFromTrust, registerAtProduction, releaseClaim, spyClient, startVehicle, type AttestedVehicle } from './ota-attest-rig.ts';
import { TpmLab } from './tpm-lab.ts';

/**
 * Issue #10 Must show 5 — remote attestation with real parts: the vehicle's TPM (swtpm) quotes PCR 14 with the
 * attestation key created at provisioning, over the OEM link (real mosquitto, mTLS, per-vehicle ACL), and the OEM
 * backend's attestation service verifies it against the key registered from the provisioning export and the releases
 * the OEM signed. A good boot is trusted; a replayed quote (same nonce, or an old quote under a new challenge's id and
 * nonce) and a quote by another vehicle's key are refused; a vehicle that does not answer is "not answering"; a boot
 * of a release the OEM never signed shows as unknown release; a tampered root file system's boot as tampered.
 */
const T = 120_000;
const VID = 'attest-ev-1';

describeWith([tool('swtpm'), tool('tpm2_quote'), tool('mosquitto'), tool('rauc'), tool('openssl')])('remote attestation (swtpm + mosquitto + the backend verifier)', () => {
  let lab: TpmLab;
  let other: TpmLab;
  let broker: MosquittoBroker;
  let backend: Awaited<ReturnType<typeof backendFor>>;
  let vehicle: AttestedVehicle | undefined;
  let linkKey: string;
  let v1: string;

  const record = async (l: TpmLab) => parseJson(ProvisioningRecord, await (await FsStore.open(l.dataDir)).read(DATA.record), 'record', 'KEYS_NOT_PROVISIONED');
  const start = async (bundle: string) => {
    await vehicle?.close();
    vehicle = await startVehicle(lab, broker, { vehicleId: VID, encryptedKeyPem: linkKey, claim: () => releaseClaim(lab, bundle) });
    return vehicle;
  };

  beforeAll(async () => {
    lab = await TpmLab.create();
    other = await TpmLab.create();
    await lab.bootedVehicle();
    // another vehicle's TPM: factory provisioning creates its attestation key (no boot needed: an SRK child)
    await provisionTpm(await other.deps(), { oemPolicyKeyPem: await readFile(other.oemPolicyPub, 'utf8') });
    v1 = `${lab.oemDir}/v1.raucb`;
    broker = await startMosquitto();
    backend = await backendFor(broker, { ttlMs: 4_000 });
    // production: the OEM registers the vehicle's attestation key from its provisioning export, and its signed releases
    expect(Object.keys(backendExport(await record(lab)))).toEqual(expect.arrayContaining(['attestation.pub.pem', 'attestation.tpm2b_pub']));
    await registerAtProduction(backend.registry, lab, VID);
    linkKey = await linkKeyFromTrust(lab, broker, VID);
  }, T);
  afterAll(async () => {
    await vehicle?.close().catch(() => undefined);
    await backend?.close().catch(() => undefined);
    await broker?.stop().catch(() => undefined);
    await other?.close();
    await lab?.close();
  });

  it('the attestation key is a restricted TPM signing key; registration refuses anything else', async () => {
    const rec = await record(lab);
    expect(rec.attestationKey?.name).toMatch(/^000b[0-9a-f]{64}$/);
    // the provisioning key is not restricted: it could sign a forged TPMS_ATTEST, so it is no attestation key
    const prov = await readFile(`${lab.dataDir}/${DATA.provisioningKey('pub')}`);
    await expect(backend.registry.registerVehicle('attest-ev-x', new Uint8Array(prov))).rejects.toMatchObject({ code: 'ATTEST_KEY_NOT_RESTRICTED' });
    const otherAk = backendExport(await record(other))['attestation.tpm2b_pub'] as Uint8Array;
    await expect(backend.registry.registerVehicle(VID, otherAk)).rejects.toMatchObject({ code: 'ATTEST_KEY_CONFLICT' });
    // the production path as programs: the provisioning export, then `evcc oem-backend attestation register`
    const exp = await lab.cli(['tpm', 'provision', '--oem-policy-key', lab.oemPolicyPub, '--export', lab.exportDir], { tpm: true });
    expect(exp.exitCode, exp.stderr).toBe(0);
    const dir = join(lab.base, 'attest-cli');
    const reg = await lab.cli(['oem-backend', 'attestation', 'register', '--dir', dir, '--vehicle-id', VID, '--export', lab.exportDir]);
    expect(reg.exitCode, reg.stderr).toBe(0);
    expect(JSON.parse(reg.stdout)).toMatchObject({ vehicleId: VID, akName: rec.attestationKey!.name });
    const bad = await lab.cli(['oem-backend', 'attestation', 'register', '--dir', dir, '--vehicle-id', VID, '--export', join(lab.base, 'no-such-export')]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/CONFIG_INVALID/);
    expect(bad.stderr).not.toMatch(/\n\s+at /); // no stack trace
  }, T);

  it('good boot: hello → challenge → quote, the backend records trusted (release v1, PCR 14 as signed)', async () => {
    const from = backend.records.length;
    await start(v1);
    const s = await backend.next(VID, from);
    expect(s).toMatchObject({ vehicleId: VID, state: 'trusted', version: 1, reason: { code: 'ATTEST_TRUSTED' }, claim: { version: 1, mode: 'approved' } });
    expect(s.pcr14).toBe((await backend.registry.releases())[0]!.pcrs.value);
    expect(s.challenge).toBeUndefined(); // consumed
    // queryable: the CLI reads the persisted record
    const cli = await lab.cli(['oem-backend', 'attestation', 'status', '--dir', backend.dir, '--vehicle-id', VID]);
    expect(cli.exitCode, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ vehicleId: VID, state: 'trusted', version: 1 });
  }, T);

  it('a replayed quote is refused: the same quote again, and an old quote under a new challenge\'s id and nonce', async () => {
    const spy = await spyClient(broker, OEM_BACKEND_USER, [ATTESTATION_FILTERS.quote, attestationTopics(VID).challenge]);
    const attacker = await spyClient(broker, VID, []); // root on the vehicle: its link identity
    try {
      let from = backend.records.length;
      await backend.service.challenge(VID);
      await until(() => spy.messages.some((m) => m.topic.endsWith('/attest/quote')), 20_000, 'quote');
      expect((await backend.next(VID, from)).state).toBe('trusted');
      const old = spy.messages.find((m) => m.topic.endsWith('/attest/quote'))!;
      from = backend.records.length;
      await attacker.client.publish(attestationTopics(VID).quote, old.payload, { qos: 1 });
      let s = await backend.next(VID, from);
      expect(s.lastRefusal).toMatchObject({ code: 'ATTEST_NONCE_UNKNOWN' });
      expect(s.state).toBe('trusted'); // a refused answer changes no state

      // a new challenge the vehicle does not get to answer first: the attacker rewrites the old quote's id and nonce
      vehicle!.responder.stop();
      spy.messages.length = 0;
      const id = await backend.service.challenge(VID);
      const mine = () => spy.messages.filter((m) => m.topic.endsWith('/attest/challenge')).map((m) => AttestationChallenge.parse(JSON.parse(Buffer.from(m.payload).toString('utf8')))).find((x) => x.challengeId === id);
      await until(() => mine() !== undefined, 10_000, 'challenge');
      const c = mine()!;
      const forged = { ...JSON.parse(Buffer.from(old.payload).toString('utf8')), challengeId: c.challengeId, nonce: c.nonce };
      from = backend.records.length;
      await attacker.client.publish(attestationTopics(VID).quote, JSON.stringify(forged), { qos: 1 });
      s = await backend.next(VID, from);
      expect(s.lastRefusal).toMatchObject({ code: 'ATTEST_NONCE_MISMATCH' }); // the nonce inside the signed TPMS_ATTEST
      expect(s.challenge).toBeUndefined(); // single use: the refused answer consumed it
    } finally {
      await spy.client.close();
      await attacker.client.close();
      const n = backend.records.length;
      vehicle!.responder.start(); // says hello again: challenged and answered before the next test begins
      await backend.next(VID, n);
    }
  }, T);

  it('a quote by another vehicle\'s attestation key over this vehicle\'s nonce is refused', async () => {
    const spy = await spyClient(broker, OEM_BACKEND_USER, [attestationTopics(VID).challenge]);
    const attacker = await spyClient(broker, VID, []);
    vehicle!.responder.stop();
    try {
      const id = await backend.service.challenge(VID);
      const mine = () => spy.messages.map((m) => AttestationChallenge.parse(JSON.parse(Buffer.from(m.payload).toString('utf8')))).find((x) => x.challengeId === id);
      await until(() => mine() !== undefined, 10_000, 'challenge');
      const c = mine()!;
      const q = await quote({ tpm: await other.driver(), data: await FsStore.open(other.dataDir) }, await record(other), Buffer.from(c.nonce, 'hex'), c.pcrs);
      const answer = {
        v: 1, type: 'attest.quote', challengeId: c.challengeId, nonce: c.nonce, attest: Buffer.from(q.attest).toString('base64'), signature: Buffer.from(q.signature).toString('base64'),
        pcrs: q.pcrs.map((p) => ({ index: p.index, value: Buffer.from(p.value).toString('hex') })), eventLog: await readFile(lab.eventLog, 'utf8'), release: { version: 1, mode: 'approved' },
      };
      const from = backend.records.length;
      await attacker.client.publish(attestationTopics(VID).quote, JSON.stringify(answer), { qos: 1 });
      const s = await backend.next(VID, from);
      expect(s.lastRefusal).toMatchObject({ code: 'ATTEST_SIGNATURE_INVALID' });
    } finally {
      await spy.client.close();
      await attacker.client.close();
    }
  }, T);

  it('no answer before the challenge expires: not answering', async () => {
    // the responder is still stopped (previous test): the challenge goes unanswered
    const from = backend.records.length;
    await backend.service.challenge(VID);
    const s = await backend.next(VID, from, 15_000);
    expect(s).toMatchObject({ state: 'not-answering', reason: { code: 'ATTEST_NOT_ANSWERING' } });
  }, T);

  it('a boot of a release the OEM never signed for this backend: unknown release', async () => {
    await vehicle?.close();
    vehicle = undefined;
    await lab.reboot('orderly');
    const v9 = await lab.bundle(9, 'v9-unsigned');
    await lab.bootUpTo(v9); // measured by the initramfs; `evcc boot` has no signed policy for it
    const from = backend.records.length;
    await start(v9);
    const s = await backend.next(VID, from);
    expect(s).toMatchObject({ state: 'unknown-release', reason: { code: 'ATTEST_RELEASE_UNKNOWN' }, claim: { version: 9, mode: 'degraded' } });
  }, T);

  it('a tampered root file system of release v1: tampered', async () => {
    await vehicle?.close();
    vehicle = undefined;
    await lab.reboot('orderly');
    await lab.bootUpTo(v1, { tamperedSlot: true });
    const from = backend.records.length;
    await start(v1);
    const s = await backend.next(VID, from);
    expect(s).toMatchObject({ state: 'tampered', reason: { code: 'ATTEST_ROOTFS_NOT_RELEASED' }, claim: { version: 1, mode: 'degraded' } });
    expect(s.pcr14).not.toBe((await backend.registry.releases())[0]!.pcrs.value);
    expect(s.history.map((h) => h.state)).toEqual(expect.arrayContaining(['trusted', 'refused', 'not-answering', 'unknown-release', 'tampered']));
  }, T);
});
