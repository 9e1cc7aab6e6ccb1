/**
 * Harness for SDP/TLS over a real veth pair: the SECC simulator runs as a child process (`evcc sim-secc`) inside
 * the SECC namespace; the EV end of the veth is moved (under a unique name) into the namespace of this process,
 * so the EV side runs in-process on real sockets and every packet crosses the veth pair.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { OsInterfaces } from '../../hal/net/os-interfaces.ts';
import { sh, VethPair } from '../../test/support/netns.ts';

const repo = join(dirname(fileURLToPath(import.meta.url)), '../..');

export interface EvLink {
  pair: VethPair;
  /** EV-side interface, now in this process's namespace. */
  evIf: string;
  evLinkLocal: string;
  destroy(): Promise<void>;
}

export async function createEvLink(): Promise<EvLink> {
  const pair = await VethPair.create();
  const evIf = `evcc${randomBytes(4).toString('hex')}`.slice(0, 15);
  try {
    await sh('ip', ['-n', pair.ev, 'link', 'set', pair.evIf, 'down']);
    await sh('ip', ['-n', pair.ev, 'link', 'set', pair.evIf, 'name', evIf]);
    await sh('ip', ['-n', pair.ev, 'link', 'set', evIf, 'netns', String(process.pid)]);
    await sh('sysctl', ['-qw', `net.ipv6.conf.${evIf}.accept_dad=0`]);
    await sh('ip', ['link', 'set', evIf, 'up']);
    const evLinkLocal = await new OsInterfaces().waitLinkLocal(evIf, 10_000);
    // The SECC end must be past DAD too before the simulator binds.
    return {
      pair, evIf, evLinkLocal,
      async destroy() {
        // Deleting the SECC namespace destroys veth-se and with it its peer (our evIf).
        await pair.destroy();
        await sh('ip', ['link', 'del', evIf]).catch(() => undefined);
      },
    };
  } catch (err) {
    await pair.destroy();
    await sh('ip', ['link', 'del', evIf]).catch(() => undefined);
    throw err;
  }
}

export interface SeccProcessEvent {
  event: string;
  [k: string]: unknown;
}

/** One `request` line of `evcc sim-secc`: a V2G request as the SECC session saw and answered it. */
export interface SeccRequestEvent extends SeccProcessEvent {
  event: 'request';
  connection: number;
  protocol: 'iso2' | 'din';
  name: string;
  /** The SECC process's clock (performance.now()), ms. */
  at: number;
  responseCode?: string;
  evseProcessing?: string;
  answered: boolean;
}

export interface StartSeccOptions {
  /** `--scenario NAME|PATH` (sim/secc/scenarios): transport, chain and SDP mode follow it unless ARGS set them. */
  scenario?: string;
}

export interface SeccProcess {
  address: string;
  port: number;
  /** The scenario the process runs (`default` without --scenario). */
  scenario: string;
  events: SeccProcessEvent[];
  /** The V2G requests the SECC received so far (`request` events), optionally of one message type (`CurrentDemandReq`). */
  requests(name?: string): SeccRequestEvent[];
  /** Resolves with the first event (already seen or future) that matches. */
  waitFor(pred: (e: SeccProcessEvent) => boolean, timeoutMs?: number): Promise<SeccProcessEvent>;
  stop(): Promise<void>;
}

/** Starts the SECC simulator (`sim-secc --iface veth-se ARGS`) inside the SECC namespace and waits for its `ready` line. */
export async function startSeccProcess(link: EvLink, args: string[], o: StartSeccOptions = {}): Promise<SeccProcess> {
  if (o.scenario) args = [...args, '--scenario', o.scenario];
  // bin/secc-sim.ts = `evcc sim-secc` without the rest of the CLI (independent of other command modules).
  const child: ChildProcess = spawn('ip', ['netns', 'exec', link.pair.se, process.execPath, '--import', 'tsx', join(repo, 'bin/secc-sim.ts'),
    '--log-level', 'warn', 'sim-secc', '--iface', link.pair.seIf, ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  const events: SeccProcessEvent[] = [];
  const waiters: { pred: (e: SeccProcessEvent) => boolean; resolve: (e: SeccProcessEvent) => void }[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let e: SeccProcessEvent;
    try {
      e = JSON.parse(line) as SeccProcessEvent;
    } catch {
      return;
    }
    events.push(e);
    for (const w of [...waiters]) if (w.pred(e)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(e);
    }
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const waitFor = (pred: (e: SeccProcessEvent) => boolean, timeoutMs = 30_000): Promise<SeccProcessEvent> => {
    const seen = events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`sim-secc: no matching event within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
      waiters.push({ pred, resolve: (e) => { clearTimeout(t); resolve(e); } });
      void exited.then((code) => { clearTimeout(t); reject(new Error(`sim-secc exited (${code}) before the event; stderr: ${stderr}`)); });
    });
  };
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  };
  try {
    const ready = await waitFor((e) => e.event === 'ready', 60_000);
    const requests = (name?: string): SeccRequestEvent[] =>
      events.filter((e): e is SeccRequestEvent => e.event === 'request' && (name === undefined || e.name === name));
    return { address: String(ready.address), port: Number(ready.port), scenario: String(ready.scenario ?? 'default'), events, requests, waitFor, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
