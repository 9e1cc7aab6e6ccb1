import { existsSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { KeyService } from '../../firmware/keys/key-service.ts';
import { reencryptLinkKey } from '../../firmware/keys/link-key.ts';
import { openVehicleTrust } from '../../firmware/keys/vehicle-trust.ts';
import { parseEntries, SECURITY_LOG_PATH, verifySecurityLog } from '../../firmware/log/security-log.ts';
import { SESSION_HISTORY_PATH, SessionHistory } from '../../firmware/log/session-history.ts';
import { contractFromChain } from '../../firmware/vehicle/contract.ts';
import { FsStore } from '../../hal/store/fs-store.ts';
import type { MosquittoBroker } from '../support/mosquitto.ts';
import { describeWith, root, tool } from '../support/prereq.ts';
import { ChargeRig, lines, storeKeyEnv, VID } from './charge-rig.ts';
import { until } from '../support/until.ts';
import { vehicleStore, type OtaFixture } from './ota-fixtures.ts';
import { PtyPilotBoard } from './pilot-pty.ts';
import type { SlacRig } from './slac-rig.ts';
import { TpmLab } from './tpm-lab.ts';

/**
 * `evcc charge` and `evcc run` end to end on real links (charge-rig.ts: veth pair between a charger namespace with
 * `evcc sim evse-slac`, the modem simulators and the SECC simulator on PKI-B, and an EV namespace with Debian
 * mosquitto + `evcc oem-backend` on its loopback). The vehicle starts with V2G root A only: the session must run
 * SLAC → SDP → TLS (unknown root) → OTA fetch and install of root B → TLS retry → SupportedAppProtocol; without a
 * provisioned TPM it is EIM-only and says so, with a provisioned and booted swtpm it offers PnC.
 */
let cr: ChargeRig;
let fx: OtaFixture;
let rig: SlacRig;
let broker: MosquittoBroker;
let dir: string;
const spawnIn = (ns: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess => cr.spawnIn(ns, args, env);
const vehicle = (name: string, extra?: Record<string, unknown>) => cr.vehicle(name, extra);
const retainedState = () => cr.retainedState();

describeWith([root, tool('ip'), tool('mosquitto'), tool('swtpm'), tool('tpm2_startup'), tool('rauc'), tool('socat')])('evcc charge over veth: SLAC, SDP, TLS unknown root → OTA → retry, SupportedAppProtocol', () => {
  beforeAll(async () => {
    cr = await ChargeRig.start();
    ({ fx, rig, broker, dir } = cr);
  }, 90_000);
  afterAll(async () => {
    await cr?.destroy();
  });

  it('establishes the session with root B fetched from the OEM backend, every step in the bench log', async () => {
    const { pair } = rig;
    // The vehicle: factory root A, the OEM backend key; no TPM provisioning (degraded: EIM only).
    const { config } = await vehicle('charge');
    const ev = spawnIn(pair.ev, ['--config', config, '--no-log-fields', 'charge', '--iface', pair.evIf, '--store-key-env', 'EVCC_STORE_KEY', '--json'], storeKeyEnv());
    const evIo = lines(ev);
    const code = await new Promise<number | null>((r) => ev.once('exit', (c) => r(c)));
    await new Promise((r) => setTimeout(r, 50)); // readline drains
    const log = evIo.err.map((l) => l.slice(13)); // drop the time stamp
    if (process.env.EVCC_SHOW_BENCH_LOG) process.stderr.write(`${evIo.err.join('\n')}\n${evIo.out.join('\n')}\n`);
    expect(code, evIo.err.join('\n')).toBe(0);

    const report = JSON.parse(evIo.out.join('\n')) as {
      ok: boolean; state: string; link: { evseMac: string }; secc: { address: string; iface: string }; channel: { protocol: string; installedRoot: { subject: string } };
      protocol: string; payment: string; soc: { start: number; end: number }; endReason: { code: string; orderly: boolean };
      security: { pnc: boolean; paymentOptions: string[]; degraded: { code: string } }; roots: string[];
    };
    expect(report).toMatchObject({ ok: true, state: 'Ended', protocol: 'iso2', payment: 'ExternalPayment', endReason: { code: 'SESSION_COMPLETED', orderly: true } });
    expect(report.soc.end).toBeGreaterThanOrEqual(80);
    expect(report.link.evseMac.toLowerCase()).toBe(rig.seMac.toLowerCase());
    expect(report.secc.iface).toBe(pair.evIf);
    expect(report.channel.protocol).toBe('TLSv1.2');
    expect(report.channel.installedRoot.subject).toBe(fx.pki.b.root.cert.subject);
    expect(report.roots).toEqual([fx.pki.a.root.cert.subject, fx.pki.b.root.cert.subject]);
    // No TPM provisioning: the key service refuses, the session says it is EIM-only.
    expect(report.security.pnc).toBe(false);
    expect(report.security.paymentOptions).toEqual(['ExternalPayment']);
    expect(report.security.degraded.code).toBe('KEYS_NOT_PROVISIONED');

    // The bench log, in order.
    const step = (re: RegExp) => log.findIndex((l) => re.test(l));
    const steps = [
      step(/^\[INFO\] SLAC: matching process successful$/),
      step(/^\[INFO\] SDP: SECC found at \[fe80::[0-9a-f:]+\]:\d+ \(TLS\)$/),
      step(/^\[ERROR\] TLS: connection failed: unknown root CA CN=V2G Root CA B/),
      step(/^\[INFO\] OTA: V2G root installed$/),
      step(/^\[INFO\] TLS: connection established$/),
      step(/^\[INFO\] APPHAND: SupportedAppProtocol: urn:iso:15118:2:2013:MsgDef/),
      step(/^\[INFO\] ISO2: ← SessionSetupRes/),
      step(/^\[INFO\] ISO2: → PaymentServiceSelectionReq \(ExternalPayment/),
      step(/^\[INFO\] ISO2: → CurrentDemandReq/),
      step(/^\[INFO\] ISO2: ← SessionStopRes/),
      step(/^\[INFO\] EVCC: session complete: ISO 15118-2, EIM, TLS/),
    ];
    expect(steps.every((i) => i >= 0), `${JSON.stringify(steps)}\n${log.join('\n')}`).toBe(true);
    for (let i = 1; i < steps.length; i++) expect(steps[i]!, log.join('\n')).toBeGreaterThan(steps[i - 1]!);
    expect(step(/^\[WARN\] EVCC: security policy: key service refused \(KEYS_NOT_PROVISIONED\)/)).toBeGreaterThanOrEqual(0);

  }, 120_000);
  it('evcc charge on a provisioned, booted vehicle (swtpm): trust unsealed from the TPM, encrypted link key, PnC offered; refused after an unmeasured reboot', async () => {
    const lab = await TpmLab.create();
    const bridges: ChildProcess[] = [];
    try {
      // Factory and first good boot, in process against the real swtpm (as the other TPM tests do).
      await lab.bootedVehicle(); // factory, v1 booted, runtime secret and provisioning key created
      const deps = await lab.deps();
      const keys = await KeyService.open(deps, { reclaim: true });
      const linkKey = join(dir, 'tpm-vehicle-link.key');
      try {
        const trust = await openVehicleTrust({ keys, data: deps.data, log: deps.log });
        await trust.store.installRoot(fx.pki.a.root.der, { source: 'factory' });
        await trust.installBackendKey(fx.signer.publicKeyPem);
        await writeFile(linkKey, reencryptLinkKey(await readFile(join(dir, 'vehicle.key')), { passphrase: trust.linkKeyPassphrase }), { mode: 0o600 });
        // The MO's contract (bench: compat import of its key) and its chain, as a CertificateInstallation leaves them.
        const mo = fx.pki.mo;
        const imported = await keys.importPlaintextContractKey(new Uint8Array(Buffer.from(mo.contract.keyPem)));
        await trust.store.putContractChain(imported.id, [mo.contract.der, mo.sub2.der, mo.sub1.der]);
      } finally {
        await keys.close();
      }

      // swtpm listens on the host's loopback: bridge both ports into the EV namespace through unix sockets.
      for (const port of [lab.swtpm.port, lab.swtpm.ctrlPort]) {
        const sock = join(dir, `swtpm-${port}.sock`);
        const host = spawn('socat', [`UNIX-LISTEN:${sock},fork`, `TCP:127.0.0.1:${port}`], { stdio: 'ignore' });
        bridges.push(host);
        await until(() => existsSync(sock), 5_000, 'socat unix socket');
        bridges.push(spawn('ip', ['netns', 'exec', rig.pair.ev, 'socat', `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `UNIX-CONNECT:${sock}`], { stdio: 'ignore' }));
      }
      const config = join(dir, 'tpm.json');
      await writeFile(config, JSON.stringify({
        vehicleId: VID, dataDir: lab.dataDir, runDir: lab.runDir, plcInterface: rig.pair.evIf, tpm: { tcti: lab.tcti }, ev: { sim: { timeScale: 1200 } },
        ota: { brokerUrl: broker.url, protocolVersion: 5, caFile: join(dir, 'link-ca.pem'), certFile: join(dir, 'vehicle.pem'), keyFile: linkKey, fallback: 'eim' },
      }));
      await new Promise((r) => setTimeout(r, 300)); // the namespace-side listeners

      const ev = spawnIn(rig.pair.ev, ['--config', config, '--no-log-fields', 'charge', '--json']); // no store key in the environment
      const io = lines(ev);
      const code = await new Promise<number | null>((r) => ev.once('exit', (c) => r(c)));
      await new Promise((r) => setTimeout(r, 50));
      if (process.env.EVCC_SHOW_BENCH_LOG) process.stderr.write(`${io.err.join('\n')}\n`);
      expect(code, io.err.join('\n')).toBe(0);
      const report = JSON.parse(io.out.join('\n')) as { ok: boolean; payment: string; state: string; security: { pnc: boolean; paymentOptions: string[] }; channel: { installedRoot: { subject: string } }; roots: string[] };
      // DC Plug & Charge on veth: the charger (own namespace) verified the AuthorizationReq signature with the contract
      // chain; the contract key signed inside swtpm.
      expect(report).toMatchObject({ ok: true, state: 'Ended', payment: 'Contract' });
      expect(report.security).toMatchObject({ pnc: true, paymentOptions: ['Contract', 'ExternalPayment'], sdpSecurity: 'tls-preferred' });
      expect(cr.secc.err.concat(cr.secc.out).some((l) => /SECC ← AuthorizationReq \(signed\)/.test(l)), cr.secc.err.join('\n')).toBe(true);
      expect(io.err.some((l) => /ISO2: ← AuthorizationRes \(OK, Finished\)/.test(l)), io.err.join('\n')).toBe(true);
      expect(report.channel.installedRoot.subject).toBe(fx.pki.b.root.cert.subject);
      const log = io.err.map((l) => l.slice(13));
      expect(log.some((l) => /^\[INFO\] KEYS: vehicle trust opened: store verified with the TPM-derived key$/.test(l)), log.join('\n')).toBe(true);
      expect(log.some((l) => /^\[INFO\] KEYS: contract key armed \(release v1\): Plug & Charge available$/.test(l))).toBe(true);
      expect(log.some((l) => /not encrypted|from the environment/.test(l))).toBe(false);

      // The runtime's security log: checkpoints at start and stop signed by the TPM log key, Solution C's root install
      // in it; the session in the encrypted history, readable with the TPM-derived key alone.
      const logKeyPem = (JSON.parse(await readFile(join(lab.dataDir, 'tpm/provisioned.json'), 'utf8')) as { logKey: { publicKeyPem: string } }).logKey.publicKeyPem;
      const securityLog = async () => readFile(join(lab.dataDir, SECURITY_LOG_PATH), 'utf8');
      expect(verifySecurityLog(await securityLog(), logKeyPem)).toMatchObject({ signedCheckpoints: 2, unsignedCheckpoints: [], unsignedTail: 0 });
      expect(parseEntries(await securityLog()).filter((e) => e.kind === 'pki.root-installed').map((e) => e.detail.subject)).toEqual([report.channel.installedRoot.subject]);
      const emaid = contractFromChain([fx.pki.mo.contract.der]).emaid;
      expect(await readFile(join(lab.dataDir, SESSION_HISTORY_PATH), 'utf8')).not.toContain(emaid);
      const hk = await KeyService.open(deps, { reclaim: true });
      try {
        const t = await openVehicleTrust({ keys: hk, data: deps.data, log: deps.log });
        const history = new SessionHistory({ store: deps.data, key: t.historyKey, random: () => new Uint8Array(12), log: deps.log }, { vehicleId: `tpm:${hk.provisioning.storageKey.name}` });
        expect(await history.read()).toMatchObject([{ n: 0, ok: true, payment: 'Contract', protocol: 'iso2', emaid }]);
      } finally {
        await hk.close();
      }

      // Reboot without measured boot, the old boot state kept (PCR 14 back to zero): the TPM refuses the OEM-signed
      // state, so there is no verified store and no PnC — the session ends typed, and says why.
      await lab.reboot('orderly', { keepRunDir: true });
      const again = spawnIn(rig.pair.ev, ['--config', config, '--no-log-fields', 'charge', '--json']);
      const aio = lines(again);
      expect(await new Promise<number | null>((r) => again.once('exit', (c) => r(c))), aio.err.join('\n')).toBe(1);
      await new Promise((r) => setTimeout(r, 50));
      expect(aio.out.join('\n'), aio.err.join('\n')).not.toBe('');
      const refused = JSON.parse(aio.out.join('\n')) as { state: string; endReason: { code: string }; security: { pnc: boolean; degraded: { code: string } } };
      expect(refused.state).toBe('Failed');
      expect(refused.endReason.code).toBe('EVCC_TRUST_UNAVAILABLE');
      expect(refused.security.pnc).toBe(false);
      expect(refused.security.degraded.code, aio.err.join('\n')).toMatch(/^TPM_POLICY_/);
      // The OEM link's credential does not depend on the software state (issue #10): the degraded vehicle still
      // opens its link key and can report; only the state-bound keys are refused.
      expect(aio.err.some((l) => /OEM link secret unsealed \(independent of the software state\)/.test(l)), aio.err.join('\n')).toBe(true);
      expect(aio.err.some((l) => /OEM link key is encrypted and its passphrase is unavailable/.test(l)), aio.err.join('\n')).toBe(false);
      // The TPM's refusal and the unreadable history are in the log; its checkpoints are unsigned with the reason.
      const after = verifySecurityLog(await securityLog(), logKeyPem);
      expect(after.unsignedCheckpoints.length).toBeGreaterThanOrEqual(1);
      expect(after.unsignedCheckpoints[0]!.reason).toMatch(/^(TPM_POLICY_|KEYS_)/);
      const kinds = parseEntries(await securityLog()).map((e) => e.kind);
      expect(kinds).toContain('keys.refused');
      expect(kinds).toContain('history.unreadable');
    } finally {
      for (const b of bridges) b.kill('SIGKILL');
      await lab.close();
    }
  }, 180_000);

  it('--link-up: a bench whose PLC link is up by other means skips SLAC and runs the session on the interface', async () => {
    const { config } = await vehicle('linkup');
    const ev = spawnIn(rig.pair.ev, ['--config', config, '--no-log-fields', 'charge', '--link-up', '--store-key-env', 'EVCC_STORE_KEY', '--json'], storeKeyEnv());
    const io = lines(ev);
    const code = await new Promise<number | null>((r) => ev.once('exit', (c) => r(c)));
    await new Promise((r) => setTimeout(r, 50));
    expect(code, io.err.join('\n')).toBe(0);
    const report = JSON.parse(io.out.join('\n')) as { ok: boolean; link: { given: boolean }; endReason: { code: string } };
    expect(report).toMatchObject({ ok: true, link: { given: true }, endReason: { code: 'SESSION_COMPLETED' } });
    expect(io.err.some((l) => /SLAC: link given as up on /.test(l)), io.err.join('\n')).toBe(true);
    expect(io.err.some((l) => /SLAC: starting SLAC/.test(l))).toBe(false);
  }, 60_000);

  it('degraded without a verified store: EIM only, and no TLS against unverified roots (typed failure, exit 1)', async () => {
    const { config } = await vehicle('untrusted');
    const ev = spawnIn(rig.pair.ev, ['--config', config, '--no-log-fields', 'charge', '--no-keys', '--no-ota', '--json']);
    const io = lines(ev);
    const code = await new Promise<number | null>((r) => ev.once('exit', (c) => r(c)));
    await new Promise((r) => setTimeout(r, 50));
    expect(code, io.err.join('\n')).toBe(1);
    const report = JSON.parse(io.out.join('\n')) as { state: string; endReason: { code: string }; security: { pnc: boolean }; timeline: { state: string }[] };
    expect(report.state).toBe('Failed');
    expect(report.endReason.code).toBe('EVCC_TRUST_UNAVAILABLE');
    expect(report.security.pnc).toBe(false);
    expect(report.timeline.map((t) => t.state)).toEqual(['WaitForPlugIn', 'Matching', 'WaitForSeccDiscoveryRes', 'WaitForChannel']);
    expect(io.err.some((l) => /PKI: no verified certificate store/.test(l))).toBe(true);
    expect(io.err.at(-1)).toMatch(/^evcc: EVCC_TRUST_UNAVAILABLE: /);
  }, 60_000);

  it('evcc run: proactive root sync, a session per plug-in reported by the pilot board (pty), ended at unplug; clean SIGTERM', async () => {
    const board = new PtyPilotBoard();
    try {
      const { config, dataDir } = await vehicle('run', { pilot: { serialPath: board.path } });
      const svc = spawnIn(rig.pair.ev, ['--config', config, '--no-log-fields', 'run', '--store-key-env', 'EVCC_STORE_KEY'], storeKeyEnv());
      const io = lines(svc);
      const exited = new Promise<number | null>((r) => svc.once('exit', (c) => r(c)));
      const has = (re: RegExp) => io.err.some((l) => re.test(l));
      const count = (re: RegExp) => io.err.filter((l) => re.test(l)).length;
      const show = () => io.err.join('\n');
      try {
        await until(() => has(/EVCC: service running: waiting for plug-in/), 30_000, `service start\n${show()}`);
        expect(has(/KEYS: key service refused/), show()).toBe(true);
        // Proactive sync: root B arrives from the Root Certificate Pool before any charger asks for it.
        await until(() => has(/OTA: V2G root list synced/), 15_000, `root list sync\n${show()}`);

        // The OEM backend sees the vehicle online and in degraded mode (ARCHITECTURE.md §3 step 1).
        expect(await retainedState()).toEqual({ state: 'online', mode: 'eim-only', degraded: { code: 'KEYS_NOT_PROVISIONED' } });

        board.plugIn(100); // state B without 5 %: no high-level communication, no session
        board.plugIn(5);
        await until(() => count(/EVCC: session complete: ISO 15118-2/) === 1, 30_000, `first session\n${show()}`);
        board.unplug();
        await until(() => has(/PILOT: unplugged \(state A\): session 1 ended/), 10_000, `unplug\n${show()}`);
        board.plugIn(5);
        await until(() => count(/EVCC: session complete: ISO 15118-2/) === 2, 30_000, `second session\n${show()}`);
        // Every session went through SLAC, SDP, TLS (root B already synced: no fetch) and SupportedAppProtocol.
        expect(count(/SLAC: matching process successful/)).toBe(2);
        expect(count(/APPHAND: SupportedAppProtocol: urn:iso:15118:2:2013:MsgDef/)).toBe(2);
        // S2 went through the pilot board each session: state C before CableCheck, B again at the end.
        expect(board.received.filter((l) => l === 'S2 1').length, show()).toBeGreaterThanOrEqual(2);
        expect(board.received.filter((l) => l === 'S2 0').length, show()).toBeGreaterThanOrEqual(2);
        expect(has(/OTA: requesting V2G root from OEM backend/)).toBe(false);
        expect(count(/PILOT: state B, 5 % duty: high-level communication requested/)).toBe(2);

        // Unplugged during SLAC: the setup is aborted (typed), the service waits for the next plug-in.
        board.unplug();
        await until(() => has(/PILOT: unplugged \(state A\): session 2 ended/), 10_000, `unplug 2\n${show()}`);
        board.plugIn(5);
        await until(() => count(/EVCC: WaitForPlugIn -> Matching/) === 3, 10_000, `third session\n${show()}`);
        board.unplug();
        await until(() => has(/PILOT: unplugged \(state A\): session 3 ended/), 10_000, `unplug 3\n${show()}`);
        expect(has(/EVCC: session 3 setup aborted in Matching: unplugged \(state A\)/), show()).toBe(true);
        expect(count(/EVCC: session complete/)).toBe(2);
      } finally {
        svc.kill('SIGTERM');
      }
      expect(await exited, show()).toBe(0);
      if (process.env.EVCC_SHOW_BENCH_LOG) process.stderr.write(`${show()}\n`);
      expect(has(/EVCC: service stopped/), show()).toBe(true);
      expect(await retainedState()).toEqual({ state: 'offline' });
      const reopened = await vehicleStore(await FsStore.open(dataDir), []);
      expect(reopened.listRoots().map((r) => r.subject)).toEqual([fx.pki.a.root.cert.subject, fx.pki.b.root.cert.subject]);
    } finally {
      board.close();
    }
  }, 120_000);
  it('evcc run --trigger now (bench without a pilot board): one session at once, service up until SIGTERM', async () => {
    const { config } = await vehicle('now', { ota: { enabled: false } });
    const svc = spawnIn(rig.pair.ev, ['--config', config, '--no-log-fields', 'run', '--trigger', 'now', '--no-keys', '--store-key-env', 'EVCC_STORE_KEY'], storeKeyEnv());
    const io = lines(svc);
    const exited = new Promise<number | null>((r) => svc.once('exit', (c) => r(c)));
    const show = () => io.err.join('\n');
    try {
      // Root A only and no OEM link: the PKI-B charger cannot be authenticated; the failure is typed, nothing downgraded.
      await until(() => io.err.some((l) => /EVCC: session FAILED: OTA_ROOT_UNAVAILABLE|EVCC: session FAILED: TLS_UNKNOWN_ROOT/.test(l)), 30_000, `session end\n${show()}`);
      expect(io.err.some((l) => /KEYS: key service refused: no TPM key service \(--no-keys\)/.test(l)), show()).toBe(true);
      expect(io.err.some((l) => /OTA: OEM backend link disabled/.test(l)), show()).toBe(true);
      expect(io.err.some((l) => /session complete/.test(l))).toBe(false);
      await new Promise((r) => setTimeout(r, 300));
      expect(svc.exitCode, 'the service stays up after the session').toBeNull();
    } finally {
      svc.kill('SIGTERM');
    }
    expect(await exited, show()).toBe(0);
    expect(io.err.some((l) => /EVCC: service stopped/.test(l))).toBe(true);
  }, 60_000);
});
