import { createServer, connect } from 'node:net';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { EvccError } from '../../core/errors.ts';
import { OWNER_FILE, processStartTime, sweepStaleSessionDirs, writeOwnerFile, type SweepResult } from '../store/session-dirs.ts';

/**
 * The simulated side of the TPM HAL: swtpm (libtpms) on free local TCP ports, so every refusal in a test or on a
 * bench without a TPM HAT comes from a real TPM 2.0 implementation. Power cycling follows the three cases of
 * TPM.md §3/§8: orderly (TPM2_Shutdown(CLEAR) → TPM Reset), state (Shutdown(STATE) → TPM Restart, what any root
 * process can provoke) and powerloss (nothing sent; unorderly, raises the DA counter if a DA key was used).
 *
 * swtpm dies with its parent: it is started through `setpriv --pdeathsig KILL` (util-linux), which sets
 * PR_SET_PDEATHSIG and execs swtpm in place — Node cannot call prctl without a native addon. A SIGKILLed bench
 * session thus leaves no swtpm behind (execa's `cleanup` only covers a normal exit). Linux ties the death signal
 * to the thread that forked: Node forks from its main thread, so this holds unless swtpm is started inside a
 * worker_threads Worker (then the worker's exit kills it). Where setpriv is missing, swtpm runs without it.
 *
 * The state dir carries an owner record (hal/store/session-dirs.ts); each start first removes the temp session
 * dirs (`/tmp/evcc-bench-*`, …) whose owner is gone, and kills a swtpm that outlived its owner there.
 */
export type RebootKind = 'orderly' | 'state' | 'powerloss';

export interface SwtpmOptions {
  /** Absolute state dir (swtpm chdirs to / when daemonising; a relative dir puts the TPM in failure mode). */
  stateDir: string;
  logFile?: string;
  /** Fixed server port (control channel = port + 1, as the swtpm TCTI expects); default: a free pair. */
  port?: number;
}

let setprivAvailable: Promise<boolean> | undefined;
/** Whether util-linux `setpriv` with `--pdeathsig` is on the PATH (checked once). */
export function hasSetpriv(): Promise<boolean> {
  setprivAvailable ??= execa('setpriv', ['--help'], { reject: false, stdin: 'ignore' })
    .then((r) => r.exitCode === 0 && String(r.stdout).includes('--pdeathsig'))
    .catch(() => false);
  return setprivAvailable;
}

/** True when 127.0.0.1:port can be bound now. */
function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/**
 * A port pair for swtpm below Linux's ephemeral range (32768–60999): a port the kernel hands out for listen(0) is
 * also a candidate source port of every outgoing connection, and under parallel tests (tpm2-tools, MQTT, TLS) one of
 * them took it between our check and swtpm's bind — swtpm then exits (seen as "swtpm did not start").
 */
async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20_000 + 2 * Math.floor(Math.random() * 6_000);
    if ((await canListen(port)) && (await canListen(port + 1))) return port;
  }
  throw new Error('no free port pair below the ephemeral range');
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** True when the TCP listener on 127.0.0.1:port belongs to `pid` (ss from iproute2; a plain exit check without it). */
async function listenerIsOurs(port: number, pid: number | undefined): Promise<boolean> {
  if (pid === undefined) return false;
  const r = await execa('ss', ['-Hltnp', `sport = :${port}`], { reject: false });
  if (r.exitCode !== 0 || typeof r.stdout !== 'string') {
    await new Promise((res) => setTimeout(res, 50));
    return isAlive(pid);
  }
  return r.stdout.includes(`pid=${pid},`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export class Swtpm {
  private child: ResultPromise | undefined;
  private constructor(readonly opts: SwtpmOptions, readonly port: number, readonly ctrlPort: number) {}

  /** TCTI string for tpm2-tools. */
  get tcti(): string {
    return `swtpm:host=127.0.0.1,port=${this.port}`;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** What the last start's sweep removed (for the bench log and tests). */
  static lastSweep: SweepResult = { removed: [], killed: [] };

  static async start(opts: SwtpmOptions): Promise<Swtpm> {
    if (!isAbsolute(opts.stateDir)) throw new EvccError('CONFIG_INVALID', 'swtpm state dir must be absolute', { stateDir: opts.stateDir });
    if (opts.port !== undefined && (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65534)) {
      throw new EvccError('CONFIG_INVALID', 'swtpm port must be an integer 1…65534 (control channel = port + 1)', { port: opts.port });
    }
    // Never fails the start: a dir it cannot remove stays for the next one.
    Swtpm.lastSweep = await sweepStaleSessionDirs().catch(() => ({ removed: [], killed: [] }));
    await mkdir(opts.stateDir, { recursive: true, mode: 0o700 });
    let lastErr: unknown;
    if (opts.port !== undefined) {
      const tpm = new Swtpm(opts, opts.port, opts.port + 1);
      await tpm.launch();
      return tpm;
    }
    for (let attempt = 0; attempt < 10; attempt++) {
      // The swtpm TCTI always uses port+1 as the control channel: find a free adjacent pair.
      const port = await freePort();
      if (port >= 65535 || (await canConnect(port + 1))) continue;
      const tpm = new Swtpm(opts, port, port + 1);
      try {
        await tpm.launch();
        return tpm;
      } catch (err) {
        lastErr = err; // port raced by another test: pick new ports
      }
    }
    throw new EvccError('PREREQUISITE_MISSING', 'swtpm did not start', {}, { cause: lastErr });
  }

  private async launch(): Promise<void> {
    const swtpmArgs = ['socket', '--tpm2',
      '--server', `type=tcp,port=${this.port},bindaddr=127.0.0.1`,
      '--ctrl', `type=tcp,port=${this.ctrlPort},bindaddr=127.0.0.1`,
      '--tpmstate', `dir=${this.opts.stateDir}`,
      '--flags', 'not-need-init,startup-clear',
      ...(this.opts.logFile ? ['--log', `file=${this.opts.logFile},level=1`] : [])];
    // setpriv execs swtpm in place: the child pid is swtpm's own (listenerIsOurs relies on it).
    const [file, args] = (await hasSetpriv()) ? ['setpriv', ['--pdeathsig', 'KILL', '--', 'swtpm', ...swtpmArgs]] : ['swtpm', swtpmArgs];
    const child = execa(file, args, { reject: false, stdin: 'ignore', cleanup: true });
    this.child = child;
    let exited = false;
    void child.then(() => (exited = true));
    for (let i = 0; i < 200; i++) {
      if (exited) {
        // With --log file=… swtpm reports there, not on stderr: take the log's last lines into the error.
        const logTail = this.opts.logFile ? (await readFile(this.opts.logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ') : '';
        throw new Error(`swtpm exited (port ${this.port}): ${String((await child).stderr).trim()}${logTail ? ` log: ${logTail}` : ''}`);
      }
      // A connect alone can reach another process that won the port race while our swtpm fails to bind: accept the
      // port only once the listener on it is our own child.
      if ((await canConnect(this.port)) && (await listenerIsOurs(this.port, child.pid))) {
        const startTime = processStartTime(child.pid!);
        await writeOwnerFile(this.opts.stateDir, { pid: child.pid!, ...(startTime !== undefined ? { startTime } : {}) });
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    await this.stop();
    throw new Error('swtpm not listening');
  }

  /** Power-cycles the TPM: PCRs reset, Startup(CLEAR) on the same ports and state. `shutdown` sends the TPM2_Shutdown. */
  async reboot(kind: RebootKind, shutdown: (type: 'clear' | 'state') => Promise<void>): Promise<void> {
    if (kind === 'orderly') await shutdown('clear');
    if (kind === 'state') await shutdown('state');
    await this.stop();
    let lastErr: unknown;
    for (let i = 0; i < 40; i++) {
      try {
        await this.launch();
        return;
      } catch (err) {
        lastErr = err; // the port may linger for a moment
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new EvccError('PREREQUISITE_MISSING', 'swtpm did not restart', {}, { cause: lastErr });
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child) return;
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await child.catch(() => undefined);
      clearTimeout(t);
    }
    // Stopped in order: the dir is no longer a session to sweep (a bench run with --keep stays for inspection).
    await rm(join(this.opts.stateDir, OWNER_FILE), { force: true }).catch(() => undefined);
  }
}
