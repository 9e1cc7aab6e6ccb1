import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sh, VethPair } from '../support/netns.ts';

/**
 * A charger on a real link for SLAC: two network namespaces joined by a veth pair, Debian's `evse`
 * (plc-utils-extra) in the charger namespace, our modem simulators, optionally tshark capturing on the charger end.
 *
 * Where the modems live. On a veth pair a frame reaches a host's raw socket only when it arrives from the peer end
 * (a packet socket bound to 0x88E1 never sees frames sent on its own interface). So each host's "local modem" runs
 * on the OPPOSITE end of the veth:
 *   charger namespace, veth-se:  Debian `evse` (host)   + modem sim --side ev   (the EV's local modem: answers the
 *                                                          EV host's CM_SET_KEY.REQ, which arrives from the peer)
 *   EV namespace,      veth-ev:  our EV / Debian `pev`  + modem sim --side evse --see-outgoing (the charger's modem:
 *                                                          answers evse's CM_SET_KEY.REQ and turns the sounds the EV
 *                                                          sends on this very interface into CM_ATTEN_PROFILE.IND)
 * Both modems answer from 00:B0:52:xx addresses and only for the host MAC they serve.
 */
const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Proc {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<number | null>;
}

function track(child: ChildProcess): Proc {
  const p: Proc = { child, stdout: '', stderr: '', exited: undefined as unknown as Promise<number | null> };
  child.stdout?.on('data', (d: Buffer) => (p.stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (p.stderr += d.toString()));
  p.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  return p;
}

async function waitFor(p: Proc, re: RegExp, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(p.stdout + p.stderr)) {
    if (p.child.exitCode !== null) throw new Error(`${what} exited early (${p.child.exitCode}): ${p.stdout}${p.stderr}`);
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms: ${p.stdout}${p.stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function stop(p: Proc | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill(signal);
  const killer = setTimeout(() => p.child.kill('SIGKILL'), 3000);
  await p.exited;
  clearTimeout(killer);
}

/** The evcc CLI as one node process (no tsx wrapper process in between, so signals reach it). */
export function evccArgs(args: string[]): [string, string[]] {
  return [process.execPath, ['--import', 'tsx', join(repo, 'bin', 'evcc.ts'), ...args]];
}

export interface RigOptions {
  nmk?: string;
  nid?: string;
  attenuationDb?: number;
  capture?: boolean;
  /** The charger-side SLAC host: Debian's `evse` (default) or our `evcc sim evse-slac`. */
  charger?: 'debian-evse' | 'evcc-sim';
  /** Extra flags of the EV's modem simulator (`--join-delay 3000`, `--never-join`, …). */
  evModemArgs?: string[];
}

export class SlacRig {
  readonly procs: Proc[] = [];
  capture: Proc | undefined;
  evMac = '';
  seMac = '';
  readonly nmk: string;
  readonly nid: string;

  private constructor(readonly pair: VethPair, readonly dir: string, options: RigOptions) {
    this.nmk = options.nmk ?? randomBytes(16).toString('hex');
    // The top two bits of the NID's last byte are the security level: keep them 0 (like evse's own default).
    this.nid = options.nid ?? `${randomBytes(6).toString('hex')}0${randomBytes(1).readUInt8(0) % 4}`;
  }

  get capturePath(): string {
    return join(this.dir, 'slac.pcapng');
  }
  get evModemLog(): string {
    return join(this.dir, 'ev-modem.jsonl');
  }

  static async start(options: RigOptions = {}): Promise<SlacRig> {
    const pair = await VethPair.create();
    const dir = await mkdtemp(join(tmpdir(), 'evcc-slac-'));
    const rig = new SlacRig(pair, dir, options);
    try {
      await rig.boot(options);
      return rig;
    } catch (err) {
      await rig.destroy();
      throw err;
    }
  }

  private spawnIn(ns: string, cmd: string, args: string[]): Proc {
    const p = track(this.pair.spawn(ns, cmd, args, { cwd: repo }));
    this.procs.push(p);
    return p;
  }

  private async boot(options: RigOptions): Promise<void> {
    const { pair } = this;
    this.evMac = await pair.macOf(pair.ev, pair.evIf);
    this.seMac = await pair.macOf(pair.se, pair.seIf);
    const waits: Promise<void>[] = [];
    if (options.capture) {
      this.capture = track(pair.spawn(pair.se, 'tshark', ['-i', pair.seIf, '-f', 'ether proto 0x88e1', '-w', this.capturePath], { cwd: this.dir }));
      waits.push(waitFor(this.capture, /Capturing on/, 'tshark'));
    }
    const [node, evModemArgs] = evccArgs(['--log-json', this.evModemLog, 'sim', 'modem', '-i', pair.seIf, '--side', 'ev', '--host', this.evMac, ...(options.evModemArgs ?? [])]);
    waits.push(waitFor(this.spawnIn(pair.se, node, evModemArgs), /modem simulator ready/, 'EV modem sim'));
    const [, seModemArgs] = evccArgs([
      'sim', 'modem', '-i', pair.evIf, '--side', 'evse', '--host', this.seMac, '--see-outgoing',
      '--attenuation', String(options.attenuationDb ?? 20),
    ]);
    waits.push(waitFor(this.spawnIn(pair.ev, node, seModemArgs), /modem simulator ready/, 'charger modem sim'));
    await Promise.all(waits);
    if (options.charger === 'evcc-sim') {
      const [, simArgs] = evccArgs(['sim', 'evse-slac', '-i', pair.seIf, '--nid', this.nid, '--nmk', this.nmk]);
      await waitFor(this.spawnIn(pair.se, node, simArgs), /charger SLAC simulator ready/, 'evcc sim evse-slac');
      return;
    }
    // Settle/charge times 0: evse otherwise sleeps between phases. It loops (no -l) so one charger serves many runs.
    const ini = join(this.dir, 'evse.ini');
    await writeFile(ini, [
      '[default]', 'station identifier = EVCCTESTEVSE00000', `network membership key = ${this.nmk.toUpperCase()}`,
      `network identifier = ${this.nid.toUpperCase()}`, 'number of sounds = 10', 'time to sound = 6', 'response type = 0',
      'settle time = 0', 'charge time = 0', '',
    ].join('\n'));
    const evse = this.spawnIn(pair.se, 'stdbuf', ['-oL', 'evse', '-i', pair.seIf, '-p', ini, '-t', '10000']);
    await waitFor(evse, /Listening/, 'Debian evse');
  }

  /** Runs `evcc slac` in the EV namespace; resolves with its exit code and output. */
  async runOurEv(extra: string[] = [], config?: Record<string, unknown>): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const global: string[] = [];
    if (config) {
      const file = join(this.dir, `ev-config-${this.procs.length}.json`);
      await writeFile(file, JSON.stringify(config));
      global.push('-c', file);
    }
    const [node, args] = evccArgs([...global, 'slac', '-i', this.pair.evIf, '--json', ...extra]);
    const p = track(this.pair.spawn(this.pair.ev, node, args, { cwd: repo }));
    this.procs.push(p);
    const code = await p.exited;
    return { code, stdout: p.stdout, stderr: p.stderr };
  }

  /** Runs Debian's `pev` once in the EV namespace (same link, same modems, same charger). */
  async runPev(msoundPauseMs: number): Promise<{ code: number | null; stdout: string }> {
    const ini = join(this.dir, 'pev.ini');
    await writeFile(ini, [
      '[default]', 'vehicle identifier = 0000000000000000000000000000000000',
      `network membership key = ${randomBytes(16).toString('hex').toUpperCase()}`, 'network identifier = B0F2E695666B03',
      'attenuation threshold = 40', `msound pause = ${msoundPauseMs}`, 'charge time = 0', 'settle time = 0', '',
    ].join('\n'));
    const p = track(this.pair.spawn(this.pair.ev, 'pev', ['-i', this.pair.evIf, '-p', ini, '-t', '1000']));
    this.procs.push(p);
    const code = await p.exited;
    return { code, stdout: p.stdout + p.stderr }; // pev reports progress on stderr
  }

  /** Stops tshark (flushing the file) and returns the decoded capture as tshark's JSON. */
  async stopCapture(): Promise<TsharkPacket[]> {
    // tshark may not have read the last frames yet (a loaded CI runner once lost the final four after a fixed 200 ms):
    // wait until its file has stopped growing for 750 ms (at most 10 s), then stop it.
    let size = -1;
    for (let stableSince = Date.now(), end = Date.now() + 10_000; Date.now() < end;) {
      await new Promise((r) => setTimeout(r, 250));
      const now = (await stat(this.capturePath).catch(() => undefined))?.size ?? 0;
      if (now !== size) {
        size = now;
        stableSince = Date.now();
      } else if (Date.now() - stableSince >= 750) break;
    }
    await stop(this.capture, 'SIGINT');
    return readCapture(this.capturePath);
  }

  async evModemKeys(): Promise<{ host: string; nid: string; nmk: string }[]> {
    const text = await readFile(this.evModemLog, 'utf8').catch(() => '');
    return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((r) => r.msg === 'CM_SET_KEY.REQ from host')
      .map((r) => ({ host: String(r.host), nid: String(r.nid), nmk: String(r.nmk) }));
  }

  async destroy(): Promise<void> {
    await stop(this.capture, 'SIGINT');
    await Promise.all(this.procs.map((p) => stop(p)));
    await this.pair.destroy();
    await rm(this.dir, { recursive: true, force: true });
  }
}

export interface TsharkPacket {
  time: number;
  src: string;
  dst: string;
  mmtype: number;
  /** Flattened homeplug_av.* fields. */
  fields: Record<string, string>;
}

function flatten(o: unknown, out: Record<string, string>): void {
  if (!o || typeof o !== 'object') return;
  for (const [k, v] of Object.entries(o as Record<string, unknown>)) {
    if (typeof v === 'string') out[k] = v;
    else flatten(v, out);
  }
}

export async function readCapture(path: string, filter?: string): Promise<TsharkPacket[]> {
  const args = ['-r', path, '-T', 'json'];
  if (filter) args.push('-Y', filter);
  const text = await sh('tshark', args);
  if (!text.trim()) return [];
  const packets = JSON.parse(text) as { _source: { layers: Record<string, unknown> } }[];
  return packets.map((p) => {
    const layers = p._source.layers;
    const fields: Record<string, string> = {};
    flatten(layers['homeplug-av'], fields);
    const eth: Record<string, string> = {};
    flatten(layers.eth, eth);
    const frame: Record<string, string> = {};
    flatten(layers.frame, frame);
    return {
      time: Number(frame['frame.time_epoch']) * 1000,
      src: eth['eth.src'] ?? '',
      dst: eth['eth.dst'] ?? '',
      mmtype: Number(fields['homeplug_av.mmhdr.mmtype'] ?? fields['homeplug_av.mmhdr.mmtype.qualcomm'] ?? NaN),
      fields,
    };
  });
}
