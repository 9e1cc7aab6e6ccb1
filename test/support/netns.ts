import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function sh(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await run(cmd, args, { maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

/**
 * Two network namespaces joined by a veth pair — a point-to-point "PLC segment" with real sockets, raw frames
 * and IPv6 link-local. Names are unique per instance so test files can run in parallel. `destroy()` removes both
 * namespaces (the veth pair goes with them) and is safe to call twice.
 */
export class VethPair {
  readonly ev: string;
  readonly se: string;
  readonly evIf = 'veth-ev';
  readonly seIf = 'veth-se';
  private destroyed = false;

  private constructor(tag: string) {
    this.ev = `evcc-${tag}-ev`;
    this.se = `evcc-${tag}-se`;
  }

  static async create(options: { evMac?: string; seMac?: string } = {}): Promise<VethPair> {
    const p = new VethPair(randomBytes(3).toString('hex'));
    try {
      await sh('ip', ['netns', 'add', p.ev]);
      await sh('ip', ['netns', 'add', p.se]);
      await sh('ip', ['link', 'add', p.evIf, 'netns', p.ev, 'type', 'veth', 'peer', 'name', p.seIf, 'netns', p.se]);
      for (const [ns, ifname, mac] of [[p.ev, p.evIf, options.evMac], [p.se, p.seIf, options.seMac]] as const) {
        // No DAD in test namespaces: link-local addresses are usable at once (PLATFORM.md).
        await sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
        if (mac) await sh('ip', ['-n', ns, 'link', 'set', ifname, 'address', mac]);
        await sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${ifname}.accept_dad=0`]);
        await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
        await sh('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
      }
      return p;
    } catch (err) {
      await p.destroy();
      throw err;
    }
  }

  /** Runs a command inside a namespace and resolves with its stdout. */
  exec(ns: string, cmd: string, args: string[]): Promise<string> {
    return sh('ip', ['netns', 'exec', ns, cmd, ...args]);
  }

  /** Spawns a long-running process inside a namespace. */
  spawn(ns: string, cmd: string, args: string[], options: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  }

  async macOf(ns: string, ifname: string): Promise<string> {
    return (await this.exec(ns, 'cat', [`/sys/class/net/${ifname}/address`])).trim();
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const ns of [this.ev, this.se]) await sh('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
}
