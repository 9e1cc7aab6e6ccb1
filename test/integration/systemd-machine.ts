import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync, statSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { tool, type Prerequisite } from '../support/prereq.ts';

/**
 * A real systemd (the Debian package's /lib/systemd/systemd) as PID 1 of its own PID and mount namespace, on this
 * machine's root file system — PID 1 here is not systemd, so this is how the units run under the real manager:
 * ProtectSystem=, PrivateTmp=, RuntimeDirectory=, User=, seccomp, Type=notify and the watchdog are systemd's own.
 *
 * The machine sees the host's files through overlays (writes land in the test's scratch dir, never on the host):
 * /usr gets the installed product (/usr/bin/evcc → plain node on dist/), /etc the evcc user and the config, /var the
 * provisioned data dir; /run is a fresh tmpfs (a boot) seeded with what the initramfs leaves there. Units come only
 * from SYSTEMD_UNIT_PATH (the units under test, journald, and empty stand-ins for the boot targets), so nothing else
 * of the host's systemd set starts. The network namespace is the host's (swtpm listens there).
 */
export const systemdMachinePrerequisites: Prerequisite[] = [
  { name: '/lib/systemd/systemd', present: () => existsSync('/lib/systemd/systemd') },
  tool('unshare'),
  tool('nsenter'),
  tool('systemd-tmpfiles'),
  {
    name: 'cgroup hierarchy writable (name=systemd or cgroup2)',
    present: () => existsSync('/sys/fs/cgroup/systemd/cgroup.procs') || existsSync('/sys/fs/cgroup/cgroup.procs') || existsSync('/sys/fs/cgroup/unified/cgroup.procs'),
  },
];

const CGROUP_PREFIX = 'evcc-sdmachine-';

/** Cgroup roots the manager may use (hybrid: name=systemd + unified; pure v2: the root). */
function cgroupRoots(): string[] {
  const roots = ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified'].filter((r) => existsSync(join(r, 'cgroup.procs')));
  return roots.length ? roots : ['/sys/fs/cgroup'];
}

function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) removeCgroupTree(p);
  }
  try {
    rmdirSync(dir);
  } catch {
    // still populated: the caller killed the machine; a later sweep removes it
  }
}

/** Processes left in a machine's cgroup (a killed test run): killed, the cgroups removed. */
export function sweepStaleMachines(): void {
  for (const root of cgroupRoots()) {
    for (const e of readdirSync(root).filter((n) => n.startsWith(CGROUP_PREFIX))) {
      const owner = Number(e.slice(CGROUP_PREFIX.length).split('-')[0]);
      if (owner && existsSync(`/proc/${owner}`)) continue; // another test run's machine, still alive
      const procs = join(root, e, 'init.scope', 'cgroup.procs');
      if (existsSync(procs)) {
        for (const pid of readFileSync(procs, 'utf8').split('\n').filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
      removeCgroupTree(join(root, e));
    }
  }
}

export interface MachineFile {
  content: string | Uint8Array;
  mode?: number;
}

export interface MachineSpec {
  /** Unit files by name (the units under test and drop-ins as `name.d/x.conf`). */
  units: Record<string, string>;
  /** Files under /usr, /etc, /var (paths absolute inside the machine), laid into the overlays' upper dirs. */
  files: Record<string, MachineFile>;
  /** Directory trees copied into the machine (host path → machine path). */
  trees?: Record<string, string>;
  /** Owners (uid) of machine paths, applied recursively after the files and trees are laid (what the factory left). */
  owners?: Record<string, number>;
  /** Symlinks inside the machine (machine path → target). */
  links?: Record<string, string>;
  /** What /run holds at the machine's start (the initramfs's leftovers). */
  run?: Record<string, MachineFile>;
}

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Empty stand-ins for the boot targets the units order against (DefaultDependencies pulls sysinit/basic/shutdown). */
const STAND_IN_TARGETS = ['sysinit.target', 'basic.target', 'shutdown.target', 'local-fs.target', 'network-online.target', 'network.target', 'multi-user.target', 'sockets.target', 'paths.target', 'timers.target', 'exit.target'];
const JOURNALD_UNITS = ['systemd-journald.service', 'systemd-journald.socket', 'systemd-journald-dev-log.socket', 'systemd-journald-audit.socket'];

export class SystemdMachine {
  private constructor(
    readonly base: string,
    private readonly child: ChildProcess,
    readonly pid1: number,
    /** The machine's PID namespace, read while PID 1 lives (a rebooted machine's PID 1 has no readable ns link). */
    private readonly pidNamespace: string,
    private readonly cgroup: string,
    private readonly log: () => string,
  ) {}

  static async start(spec: MachineSpec): Promise<SystemdMachine> {
    sweepStaleMachines();
    const base = await mkdtemp(join(tmpdir(), 'evcc-sdmachine-'));
    for (const layer of ['usr', 'etc', 'var']) {
      await mkdir(join(base, `${layer}.up`), { recursive: true });
      await mkdir(join(base, `${layer}.work`), { recursive: true });
    }
    const unitDir = join(base, 'units');
    await mkdir(unitDir, { recursive: true });
    for (const t of STAND_IN_TARGETS) {
      await writeFile(join(unitDir, t), t === 'exit.target'
        ? '[Unit]\nDefaultDependencies=no\nAllowIsolate=yes\nSuccessAction=exit-force\n'
        : `[Unit]\nDescription=stand-in for ${t} (test machine)\nDefaultDependencies=no\n`);
    }
    for (const u of JOURNALD_UNITS) if (existsSync(`/lib/systemd/system/${u}`)) await symlink(`/lib/systemd/system/${u}`, join(unitDir, u));
    await writeFile(join(unitDir, 'evcc-test.target'), '[Unit]\nDescription=test machine up\nDefaultDependencies=no\nWants=systemd-journald.socket systemd-journald-dev-log.socket\n');
    for (const [name, text] of Object.entries(spec.units)) {
      await mkdir(dirname(join(unitDir, name)), { recursive: true });
      await writeFile(join(unitDir, name), text);
    }
    const place = (p: string) => {
      const layer = p.split('/')[1]!;
      if (!['usr', 'etc', 'var'].includes(layer)) throw new Error(`machine file outside /usr, /etc, /var: ${p}`);
      return join(base, `${layer}.up`, p.slice(layer.length + 2));
    };
    for (const [p, f] of Object.entries(spec.files)) {
      await mkdir(dirname(place(p)), { recursive: true });
      await writeFile(place(p), f.content, { mode: f.mode ?? 0o644 });
      await chmod(place(p), f.mode ?? 0o644);
    }
    for (const [from, p] of Object.entries(spec.trees ?? {})) await cp(from, place(p), { recursive: true, verbatimSymlinks: true });
    for (const [p, target] of Object.entries(spec.links ?? {})) {
      await mkdir(dirname(place(p)), { recursive: true });
      await symlink(target, place(p));
    }
    for (const [p, uid] of Object.entries(spec.owners ?? {})) await execa('chown', ['-R', `${uid}:${uid}`, place(p)]);
    const runInit = join(base, 'run.init');
    await mkdir(runInit, { recursive: true });
    for (const [p, f] of Object.entries(spec.run ?? {})) {
      await mkdir(dirname(join(runInit, p)), { recursive: true });
      await writeFile(join(runInit, p), f.content, { mode: f.mode ?? 0o644 });
    }

    const cgroup = `${CGROUP_PREFIX}${process.pid}-${Date.now()}`;
    const roots = cgroupRoots();
    // Inside the new namespaces: overlays, a fresh /run, our own cgroup subtree, then systemd as PID 1.
    const script = [
      'set -eu',
      ...['usr', 'etc', 'var'].map((l) => `mount -t overlay overlay -o lowerdir=/${l},upperdir=${base}/${l}.up,workdir=${base}/${l}.work /${l}`),
      'mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run',
      `cp -a ${runInit}/. /run/`,
      ...roots.map((r) => `mkdir -p ${r}/${cgroup} && echo $$ > ${r}/${cgroup}/cgroup.procs`),
      `export SYSTEMD_UNIT_PATH=${unitDir} container=evcc-test`,
      'exec /lib/systemd/systemd --system --unit=evcc-test.target --log-target=journal --log-level=info --show-status=no',
    ].join('\n');
    await writeFile(join(base, 'machine.sh'), script, { mode: 0o700 });
    let output = '';
    const child = spawn('setpriv', ['--pdeathsig', 'KILL', 'unshare', '--mount', '--pid', '--fork', '--mount-proc', '--propagation', 'private', 'sh', join(base, 'machine.sh')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const unsharePid = child.pid!;
    // PID 1 of the machine is unshare's child; wait until it is systemd and answers.
    const deadline = Date.now() + 30_000;
    let pid1 = 0;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`test machine did not start (exit ${child.exitCode}): ${output}`);
      const children = readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
      if (children[0]) {
        const comm = readFileSync(`/proc/${children[0]}/comm`, 'utf8').trim();
        if (comm === 'systemd') {
          pid1 = Number(children[0]);
          const r = await execa('nsenter', ['-t', String(pid1), '-m', '-p', '--', 'systemctl', 'is-system-running'], { reject: false });
          if (/running|degraded|starting/.test(String(r.stdout))) break;
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!pid1) throw new Error(`test machine's systemd did not come up: ${output}`);
    return new SystemdMachine(base, child, pid1, readlinkSync(`/proc/${pid1}/ns/pid`), cgroup, () => output);
  }

  /** What the manager printed before its journal was up (its own lines go to the journal: `journal(unit)`). */
  get managerLog(): string {
    return this.log();
  }

  /** A command inside the machine's mount and PID namespaces (as root, outside any unit). */
  async exec(argv: string[], o: { timeoutMs?: number } = {}): Promise<CommandResult> {
    const r = await execa('nsenter', ['-t', String(this.pid1), '-m', '-p', '--', ...argv], { reject: false, timeout: o.timeoutMs ?? 60_000, stdin: 'ignore' });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  systemctl(...args: string[]): Promise<CommandResult> {
    return this.exec(['systemctl', '--no-pager', ...args], { timeoutMs: 120_000 });
  }

  /** `systemctl show` properties of a unit. */
  async show(unit: string, props: string[]): Promise<Record<string, string>> {
    const r = await this.systemctl('show', unit, ...props.map((p) => `--property=${p}`));
    const out: Record<string, string> = {};
    for (const line of r.stdout.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
    }
    return out;
  }

  /** The unit's journal (its processes' stdout/stderr and the manager's lines about it). */
  async journal(unit: string): Promise<string> {
    const r = await this.exec(['journalctl', '--no-pager', '-o', 'cat', '-u', unit]);
    return r.stdout;
  }

  /** Replaces (or adds) a unit file or drop-in, then daemon-reload. */
  async writeUnit(name: string, text: string): Promise<void> {
    const p = join(this.base, 'units', name);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, text);
    const r = await this.systemctl('daemon-reload');
    if (r.exitCode !== 0) throw new Error(`daemon-reload: ${r.stderr}`);
  }

  async readFile(path: string): Promise<string> {
    const r = await this.exec(['cat', path]);
    if (r.exitCode !== 0) throw new Error(`${path}: ${r.stderr}`);
    return r.stdout;
  }

  async close(): Promise<void> {
    try {
      process.kill(this.pid1, 'SIGKILL');
    } catch {
      // gone already
    }
    // unshare re-raises the signal that ended PID 1 (a reboot ends it with SIGHUP): the child then has a signalCode
    // and no exitCode, and its 'exit' event has been emitted already.
    const gone = this.child.exitCode !== null || this.child.signalCode !== null;
    const exited = gone ? Promise.resolve() : new Promise((r) => this.child.once('exit', r));
    // A machine that rebooted itself sits in the kernel's PID-namespace teardown until every process of the
    // namespace is gone; one left behind (outside the machine's cgroup, e.g. entered with nsenter) is killed here.
    const late = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 5_000))]);
    if (late) {
      for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d) && Number(d) !== this.pid1)) {
        try {
          if (readlinkSync(`/proc/${pid}/ns/pid`) !== this.pidNamespace) continue;
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // raced away
        }
      }
    }
    await exited;
    for (const root of cgroupRoots()) removeCgroupTree(join(root, this.cgroup));
    await rm(this.base, { recursive: true, force: true });
  }
}
