import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { EvccError } from '../../core/errors.ts';
import { hasSetpriv } from './swtpm.ts';

/**
 * tpm2-abrmd (Debian `tpm2-abrmd`, client TCTI `libtss2-tcti-tabrmd0`) in front of a TPM, on a private D-Bus session
 * bus of its own (Debian `dbus`): the resource manager a bench puts between tpm2-tools and swtpm so that handles and
 * sessions are per connection, as `/dev/tpmrm0` does on the device (README.md). Nothing here touches the system
 * bus: each instance owns a bus socket in its dir and a unique bus name, so parallel tests do not meet.
 *
 * Both daemons die with their parent (setpriv --pdeathsig KILL, as swtpm.ts). A TPM power cycle is a reboot of the
 * device, which restarts the daemon too: `restart()` (the daemon's handle map would be stale otherwise).
 */
export interface AbrmdOptions {
  /** TCTI of the TPM behind the daemon, e.g. swtpm's `swtpm:host=127.0.0.1,port=N`. */
  backendTcti: string;
  /** Absolute dir for the bus socket, the bus configuration and the logs. */
  dir: string;
}

/**
 * The private bus: Debian's session-bus policy (everything allowed, any name may be owned; without a matching
 * receive rule dbus-daemon drops the replies) — only this uid can connect (EXTERNAL auth on a 0700 dir's socket).
 */
const BUS_CONFIG = (socket: string): string => `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`;

/** Wrapped in an object: an async function returning the child itself would wait for the child's exit. */
async function spawnWithParent(file: string, args: string[], opts: { env?: Record<string, string>; log: string }): Promise<{ child: ResultPromise }> {
  const [cmd, argv] = (await hasSetpriv()) ? ['setpriv', ['--pdeathsig', 'KILL', '--', file, ...args]] : [file, args];
  const child = execa(cmd, argv, { reject: false, stdin: 'ignore', stdout: { file: opts.log }, stderr: { file: `${opts.log}.err` }, cleanup: true, ...(opts.env ? { env: opts.env } : {}) });
  return { child };
}

async function stopChild(child: ResultPromise | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await child.catch(() => undefined);
  clearTimeout(t);
}

export class Abrmd {
  private daemon: ResultPromise | undefined;
  private bus: ResultPromise | undefined;
  private constructor(readonly opts: AbrmdOptions, readonly busName: string, private readonly socket: string) {}

  /** Client TCTI: the daemon's name on the private session bus (the bus itself comes from `env`). */
  get tcti(): string {
    return `tabrmd:bus_type=session,bus_name=${this.busName}`;
  }
  /** Environment every client (tpm2-tools, `evcc` processes) needs to find the private bus. */
  get env(): Record<string, string> {
    return { DBUS_SESSION_BUS_ADDRESS: `unix:path=${this.socket}` };
  }
  get pid(): number | undefined {
    return this.daemon?.pid;
  }

  static async start(opts: AbrmdOptions): Promise<Abrmd> {
    if (!isAbsolute(opts.dir)) throw new EvccError('CONFIG_INVALID', 'abrmd dir must be absolute', { dir: opts.dir });
    await mkdir(opts.dir, { recursive: true, mode: 0o700 });
    // Bus names: dot-separated elements of [A-Za-z0-9_], not starting with a digit.
    const a = new Abrmd(opts, `org.evcc.Lab.p${process.pid}_${randomBytes(4).toString('hex')}`, join(opts.dir, 'bus.sock'));
    try {
      await a.startBus();
      await a.startDaemon();
      return a;
    } catch (err) {
      await a.stop();
      throw err;
    }
  }

  private async startBus(): Promise<void> {
    const config = join(this.opts.dir, 'bus.conf');
    await writeFile(config, BUS_CONFIG(this.socket), { mode: 0o600 });
    await rm(this.socket, { force: true });
    this.bus = (await spawnWithParent('dbus-daemon', [`--config-file=${config}`, '--nofork', '--nopidfile'], { log: join(this.opts.dir, 'dbus.log') })).child;
    for (let i = 0; i < 200; i++) {
      if (this.bus.exitCode !== null) break;
      if (await stat(this.socket).then(() => true, () => false)) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new EvccError('PREREQUISITE_MISSING', 'dbus-daemon did not start (Debian package dbus)', { dir: this.opts.dir });
  }

  private async startDaemon(): Promise<void> {
    const args = ['--session', `--dbus-name=${this.busName}`, `--tcti=${this.opts.backendTcti}`, '--logger=stdout'];
    // abrmd refuses to run as root unless told; the device runs it as its own user (tss), root is the lab's case.
    if (process.getuid?.() === 0) args.push('--allow-root');
    const env = { ...process.env, ...this.env } as Record<string, string>;
    const { child: daemon } = await spawnWithParent('tpm2-abrmd', args, { env, log: join(this.opts.dir, 'abrmd.log') });
    this.daemon = daemon;
    // Ready once a client gets an answer through it (the name is claimed after the TPM connection is up).
    for (let i = 0; i < 200; i++) {
      if (daemon.exitCode !== null) break;
      const r = await execa('tpm2_getrandom', ['--hex', '4'], { env: { ...this.env, TPM2TOOLS_TCTI: this.tcti }, reject: false, stdin: 'ignore' });
      if (r.exitCode === 0) return;
      await new Promise((res) => setTimeout(res, 25));
    }
    throw new EvccError('PREREQUISITE_MISSING', 'tpm2-abrmd did not start (Debian packages tpm2-abrmd, libtss2-tcti-tabrmd0)', { dir: this.opts.dir });
  }

  /** Restarts the daemon on the same bus and name (after a TPM power cycle, as the device's reboot would). */
  async restart(): Promise<void> {
    await stopChild(this.daemon);
    this.daemon = undefined;
    await this.startDaemon();
  }

  async stop(): Promise<void> {
    await stopChild(this.daemon);
    this.daemon = undefined;
    await stopChild(this.bus);
    this.bus = undefined;
  }
}
