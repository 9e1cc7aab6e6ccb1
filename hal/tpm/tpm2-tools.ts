import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync, readSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import { ownerGone, writeOwnerFile } from '../store/session-dirs.ts';
import { tpmErrorFromTool } from './rc.ts';
import type {
  Auth, DictionaryAttackParameters, DictionaryAttackState, Hierarchy, HierarchyState, KeyBlob, KeyRef, KeyTemplate, PcrBank, PolicySession, PolicyStep, PublicInfo,
  SaltKey, SealTemplate, ShutdownType, Tpm,
} from './types.ts';

export interface Tpm2ToolsOptions {
  /** TPM2TOOLS_TCTI: `device:/dev/tpmrm0` on the Pi, `swtpm:host=127.0.0.1,port=N` on the bench. */
  tcti: string;
  /** Volatile dir (tmpfs /run/evcc on the device): saved key contexts and scratch files, 0700. */
  runDir: string;
  log?: Logger;
  /** Environment of the tools besides TPM2TOOLS_TCTI (the lab's private D-Bus session bus for `tabrmd:`). */
  env?: Record<string, string>;
  /** A resource manager between the tools and the TPM; default: from the TCTI (`hasResourceManager`). */
  resourceManager?: boolean;
}

/**
 * Whether a TCTI reaches the TPM through a resource manager: the kernel's (`device:/dev/tpmrm0`) or tpm2-abrmd's
 * (`tabrmd:`). `device:/dev/tpm0` (also the device TCTI's default path), `swtpm:` and `mssim:` talk to the TPM
 * directly: one client at a time, and whoever fails must flush what it left behind (TPM.md pitfall 2/3).
 */
export function hasResourceManager(tcti: string): boolean {
  const [name, conf = ''] = tcti.split(/:(.*)/s, 2) as [string, string?];
  if (name === 'tabrmd' || name === 'libtss2-tcti-tabrmd.so.0') return true;
  if (name === 'device' || name === 'libtss2-tcti-device.so.0') return /^\/dev\/tpmrm\d+$/.test(conf.trim());
  return false;
}

interface SessionEntry extends PolicySession {
  file: string;
  generation: number;
}

const CONTEXT_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** A work dir without owner record is a predecessor's once it is this old (ours gets its record right after mkdtemp). */
const STALE_UNOWNED_WORK_DIR_MS = 60_000;
const HIERARCHY_FLAG: Record<Hierarchy, string> = { owner: 'o', endorsement: 'e', lockout: 'l' };
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * The real TPM HAL: tpm2-tools 5.4 processes driven through execa. Calls of one instance are serialised.
 *
 * Without a resource manager (direct TCTI) the instance behaves as the TPM's only user: transient objects are
 * flushed after each operation (`flushcontext -t` would also kill another process's objects), and a failed tool
 * triggers a full flush (-t -l -s), because a failing tool can leave its session loaded and its session file
 * stale (TPM.md pitfall 3) — which also flushes every other process's sessions, a pre-armed one included.
 * Behind a resource manager (README.md) each tool is its own connection: its transient objects go when it exits,
 * so nothing is flushed after operations, and a failure invalidates only the sessions the failing command used
 * (flushed by their files: tpm2-abrmd keeps a failed command's session; the kernel's RM drops it).
 * Scratch files hold only public data (blobs, digests, tickets, signatures) and live in a 0700 dir.
 */
export class Tpm2Tools implements Tpm {
  readonly tcti: string;
  readonly resourceManager: boolean;
  private readonly env: Record<string, string>;
  private spawns = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private pendingFlush = false;
  /** Set while building a command that loads a context file: that command leaves a transient copy behind. */
  private contextUsed = false;
  private generation = 0;
  private sessionSeq = 0;
  private readonly sessions = new Map<string, SessionEntry>();
  /** Sessions named by the command being built (behind a resource manager only these go when it fails). */
  private readonly commandSessions = new Set<string>();

  private constructor(opts: Tpm2ToolsOptions, private readonly ctxDir: string, private readonly workDir: string, private readonly log?: Logger) {
    this.tcti = opts.tcti;
    this.resourceManager = opts.resourceManager ?? hasResourceManager(opts.tcti);
    this.env = { ...opts.env, TPM2TOOLS_TCTI: opts.tcti };
  }

  static async open(opts: Tpm2ToolsOptions): Promise<Tpm2Tools> {
    const base = join(opts.runDir, 'tpm');
    await mkdir(join(base, 'ctx'), { recursive: true, mode: 0o700 });
    const workDir = await mkdtemp(join(base, 'work-'));
    await writeOwnerFile(workDir);
    const tools = new Tpm2Tools(opts, join(base, 'ctx'), workDir, opts.log);
    await tools.reclaimStaleWorkDirs(base);
    return tools;
  }

  /**
   * Work dirs of killed predecessors (issue #13 item 8): their owner is gone, so the policy sessions saved there are
   * flushed from the TPM first — without a resource manager they would keep its few session slots (swtpm: 3) and the
   * next start would fail with TPM_SESSION_MEMORY — then the dir goes. Dirs of live processes stay; one without an
   * owner record only once it is older than STALE_UNOWNED_WORK_DIR_MS (killed between mkdtemp and the record).
   */
  private async reclaimStaleWorkDirs(base: string): Promise<void> {
    for (const name of await readdir(base).catch(() => [] as string[])) {
      const dir = join(base, name);
      if (!name.startsWith('work-') || dir === this.workDir) continue;
      const gone = await ownerGone(dir);
      const stale = gone ?? (await stat(dir).then((st) => Date.now() - st.mtimeMs > STALE_UNOWNED_WORK_DIR_MS, () => false));
      if (!stale) continue;
      let flushed = 0;
      for (const f of await readdir(dir).catch(() => [] as string[])) {
        if (f.endsWith('.session.ctx') && (await this.exec('tpm2_flushcontext', [join(dir, f)])).exitCode === 0) flushed++;
      }
      await rm(dir, { recursive: true, force: true });
      this.log?.info({ dir, flushedSessions: flushed, cp: 'TPM-WORKDIR-RECLAIMED' }, 'work dir of a killed TPM driver removed');
    }
  }

  get spawnCount(): number {
    return this.spawns;
  }

  // ---- plumbing -------------------------------------------------------------------------------------------

  private locked<T>(op: () => Promise<T>): Promise<T> {
    const fn = () => {
      this.commandSessions.clear();
      return op();
    };
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async exec(tool: string, args: string[]): Promise<{ exitCode: number | undefined; stdout: string; stderr: string }> {
    this.spawns++;
    const r = await execa(tool, args, { env: this.env, reject: false, stdin: 'ignore', timeout: 30_000 });
    return { exitCode: r.exitCode, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
  }

  /**
   * As `exec`, for secrets: `input` goes to the tool's stdin and stdout comes back as bytes (a pipe: nothing on
   * disk, nothing in /proc/<pid>/cmdline). `-o /dev/stdout` fails from Node (PLATFORM.md); the default stdout works.
   */
  private async execSecret(tool: string, args: string[], input?: Uint8Array): Promise<{ exitCode: number | undefined; stdout: Uint8Array; stderr: string }> {
    this.spawns++;
    const stdin = input ? Buffer.from(input) : undefined;
    try {
      const r = await execa(tool, args, {
        env: this.env, reject: false, timeout: 30_000, encoding: 'buffer', stripFinalNewline: false,
        ...(stdin ? { input: stdin } : { stdin: 'ignore' as const }),
      });
      const out = r.stdout instanceof Uint8Array ? r.stdout : new Uint8Array(0);
      return { exitCode: r.exitCode, stdout: out, stderr: Buffer.from(r.stderr ?? new Uint8Array(0)).toString('utf8') };
    } finally {
      stdin?.fill(0);
    }
  }

  /** Runs one tool; on failure flushes everything, invalidates sessions and throws the typed error. */
  private async run(tool: string, args: string[]): Promise<string> {
    return new TextDecoder().decode(await this.runWith(tool, args, false));
  }

  private async runWith(tool: string, args: string[], secret: boolean, input?: Uint8Array): Promise<Uint8Array> {
    if (this.pendingFlush) {
      this.pendingFlush = false;
      await this.exec('tpm2_flushcontext', ['-t']);
    }
    const used = [...this.commandSessions];
    this.commandSessions.clear();
    const r = secret ? await this.execSecret(tool, args, input) : await this.exec(tool, args);
    if (this.contextUsed) {
      this.contextUsed = false;
      // flushed before the next command, i.e. off the critical path of this one; a resource manager does it itself
      if (!this.resourceManager) this.pendingFlush = true;
    }
    if (r.exitCode === 0) return typeof r.stdout === 'string' ? new TextEncoder().encode(r.stdout) : r.stdout;
    if (typeof r.stdout !== 'string') r.stdout.fill(0);
    const err = tpmErrorFromTool(tool, r.exitCode, r.stderr);
    this.log?.debug({ command: tool, code: err.code, rc: err.details.rc }, `${tool} refused`);
    if (this.resourceManager) await this.dropSessions(used);
    else await this.recover();
    throw err;
  }

  /** Behind a resource manager: forgets (and flushes, where the RM kept them) only the sessions a failed command used. */
  private async dropSessions(ids: string[]): Promise<void> {
    for (const id of ids) {
      const e = this.sessions.get(id);
      if (!e) continue;
      this.sessions.delete(id);
      await this.exec('tpm2_flushcontext', [e.file]).catch(() => undefined);
      await rm(e.file, { force: true });
    }
  }

  private async recover(): Promise<void> {
    this.generation++;
    for (const s of this.sessions.values()) await rm(s.file, { force: true });
    this.sessions.clear();
    for (const flag of ['-t', '-l', '-s']) await this.exec('tpm2_flushcontext', [flag]).catch(() => undefined);
    this.pendingFlush = false;
  }

  private scratch(name: string): string {
    return join(this.workDir, `${randomBytes(6).toString('hex')}-${name}`);
  }

  private async withFiles<T>(files: Record<string, Uint8Array | string | undefined>, fn: (paths: Record<string, string>) => Promise<T>): Promise<T> {
    const paths: Record<string, string> = {};
    try {
      for (const [k, v] of Object.entries(files)) {
        paths[k] = this.scratch(k);
        if (v !== undefined) await writeFile(paths[k]!, v, { mode: 0o600 });
      }
      return await fn(paths);
    } finally {
      for (const p of Object.values(paths)) await rm(p, { force: true });
    }
  }

  private ctxFile(name: string): string {
    if (!CONTEXT_NAME.test(name)) throw new EvccError('CONFIG_INVALID', `bad context name ${name}`);
    return join(this.ctxDir, `${name}.ctx`);
  }

  /** `-c` argument; a context file makes the tool load a transient copy, flushed before the next command. */
  private ref(key: KeyRef): string {
    if ('persistent' in key) return `0x${key.persistent.toString(16)}`;
    this.contextUsed = true;
    return this.ctxFile(key.context);
  }

  private session(s: PolicySession): SessionEntry {
    const e = this.sessions.get(s.id);
    if (!e || e.generation !== this.generation) {
      throw new EvccError('TPM_SESSION_INVALID', 'policy session was flushed (after a failure or by its owner)', { session: s.id });
    }
    this.commandSessions.add(e.id);
    return e;
  }

  isSessionLive(s: PolicySession): boolean {
    const e = this.sessions.get(s.id);
    return e !== undefined && e.generation === this.generation;
  }

  /**
   * Authorisation argument. tpm2-tools 5.4 accepts a secret after `session:FILE+` only as `hex:`/`str:` — a
   * `file:` secret is sent literally and counts as a dictionary-attack failure (TPM.md pitfall 4). So the
   * storage-key password necessarily appears in this tool's command line (/proc/<pid>/cmdline) for the tool's
   * lifetime; the device unit hides it with ProtectProc=invisible. It never touches a file here.
   */
  private auth(a: Auth): string[] {
    switch (a.kind) {
      case 'empty':
        return [];
      case 'password':
        return [`hex:${hex(a.secret)}`];
      case 'policy': {
        const s = this.session(a.session);
        return [a.secret ? `session:${s.file}+hex:${hex(a.secret)}` : `session:${s.file}`];
      }
    }
  }

  // ---- queries ----------------------------------------------------------------------------------------------

  handles(kind: 'persistent' | 'nv-index' | 'transient' | 'loaded-session' | 'saved-session'): Promise<number[]> {
    return this.locked(async () => {
      const out = await this.run('tpm2_getcap', [`handles-${kind}`]);
      return [...out.matchAll(/0x([0-9a-fA-F]+)/g)].map((m) => parseInt(m[1]!, 16));
    });
  }

  lockoutCounter(): Promise<number> {
    return this.dictionaryAttackState().then((s) => s.counter);
  }

  dictionaryAttackState(): Promise<DictionaryAttackState> {
    return this.locked(async () => {
      const out = await this.run('tpm2_getcap', ['properties-variable']);
      const prop = (name: string): number => {
        const m = new RegExp(`${name}:\\s*(0x[0-9a-fA-F]+|\\d+)`).exec(out);
        if (!m) throw new EvccError('TPM_TOOL_FAILED', `${name} missing from tpm2_getcap output`);
        return Number(m[1]);
      };
      return {
        counter: prop('TPM2_PT_LOCKOUT_COUNTER'),
        maxTries: prop('TPM2_PT_MAX_AUTH_FAIL'),
        recoveryTime: prop('TPM2_PT_LOCKOUT_INTERVAL'),
        lockoutRecovery: prop('TPM2_PT_LOCKOUT_RECOVERY'),
        inLockout: /inLockout:\s*1/.test(out),
      };
    });
  }

  setDictionaryAttackParameters(p: DictionaryAttackParameters, lockoutAuth?: Uint8Array): Promise<void> {
    return this.locked(async () => {
      const args = ['-s', '-n', String(p.maxTries), '-t', String(p.recoveryTime), '-l', String(p.lockoutRecovery)];
      await this.runWithAuth('tpm2_dictionarylockout', args, '-p', lockoutAuth);
    });
  }

  resetDictionaryLockout(lockoutAuth?: Uint8Array): Promise<void> {
    return this.locked(async () => void (await this.runWithAuth('tpm2_dictionarylockout', ['-c'], '-p', lockoutAuth)));
  }

  /**
   * A command authorised by a hierarchy password. tpm2-tools reads a plain password from `file:-` (stdin), so it never
   * reaches the command line (only `session:…+` secrets must go there, pitfall 4) nor a file.
   */
  private async runWithAuth(tool: string, args: string[], flag: string, secret: Uint8Array | undefined): Promise<string> {
    if (!secret?.length) return this.run(tool, args);
    return new TextDecoder().decode(await this.runWith(tool, [...args, flag, 'file:-'], true, secret));
  }

  // ---- hierarchies (TPM.md §8) -------------------------------------------------------------------------------

  hierarchyState(): Promise<HierarchyState> {
    return this.locked(async () => {
      const out = await this.run('tpm2_getcap', ['properties-variable']);
      const flag = (name: string): boolean => {
        const m = new RegExp(`\\b${name}:\\s*([01])`).exec(out);
        if (!m) throw new EvccError('TPM_TOOL_FAILED', `${name} missing from tpm2_getcap output`);
        return m[1] === '1';
      };
      return {
        ownerAuthSet: flag('ownerAuthSet'), endorsementAuthSet: flag('endorsementAuthSet'), lockoutAuthSet: flag('lockoutAuthSet'),
        phEnable: flag('phEnable'), shEnable: flag('shEnable'), ehEnable: flag('ehEnable'), inLockout: flag('inLockout'),
      };
    });
  }

  changeHierarchyAuth(hierarchy: Hierarchy, newAuth: Uint8Array, oldAuth?: Uint8Array): Promise<void> {
    if (newAuth.length < 1 || newAuth.length > 32) return Promise.reject(new EvccError('CONFIG_INVALID', 'hierarchy auth must be 1..32 bytes (SHA-256 digest size)', { length: newAuth.length }));
    return this.locked(async () => {
      // One stdin: the new value goes there; an old value (rotation) would have to go on the command line.
      const old = oldAuth?.length ? ['-p', `hex:${hex(oldAuth)}`] : [];
      await this.runWith('tpm2_changeauth', ['-c', HIERARCHY_FLAG[hierarchy], ...old, 'file:-'], true, newAuth);
    });
  }

  setOwnerPolicy(policy: Uint8Array, auth?: Uint8Array): Promise<void> {
    return this.locked(() => this.withFiles({ policy }, async (f) => {
      await this.runWithAuth('tpm2_setprimarypolicy', ['-C', 'o', '-L', f.policy!, '-g', 'sha256'], '-P', auth);
    }));
  }

  disablePlatformHierarchy(): Promise<void> {
    return this.locked(async () => void (await this.run('tpm2_hierarchycontrol', ['-C', 'p', 'phEnable', 'clear'])));
  }

  // ---- objects ---------------------------------------------------------------------------------------------

  createStoragePrimary(handle: number): Promise<PublicInfo> {
    return this.locked(() => this.withFiles({ ctx: undefined, name: undefined, pub: undefined }, async (f) => {
      await this.run('tpm2_createprimary', ['-C', 'o', '-g', 'sha256', '-G', 'ecc256:null:aes128cfb', '-c', f.ctx!]);
      this.contextUsed = true;
      await this.run('tpm2_evictcontrol', ['-C', 'o', '-c', f.ctx!, `0x${handle.toString(16)}`]);
      await this.run('tpm2_readpublic', ['-c', `0x${handle.toString(16)}`, '-n', f.name!, '-o', f.pub!]);
      return { name: new Uint8Array(await readFile(f.name!)), public: new Uint8Array(await readFile(f.pub!)) };
    }));
  }

  readPublic(key: KeyRef): Promise<PublicInfo> {
    return this.locked(() => this.withFiles({ name: undefined, pub: undefined }, async (f) => {
      await this.run('tpm2_readpublic', ['-c', this.ref(key), '-n', f.name!, '-o', f.pub!]);
      return { name: new Uint8Array(await readFile(f.name!)), public: new Uint8Array(await readFile(f.pub!)) };
    }));
  }

  create(parent: KeyRef, parentAuth: Auth, t: KeyTemplate): Promise<KeyBlob> {
    return this.locked(() => this.withFiles({ policy: t.authPolicy, pub: undefined, priv: undefined }, async (f) => {
      const args = ['-C', this.ref(parent), ...this.flag('-P', this.auth(parentAuth)), '-g', 'sha256', '-G', `${t.alg}:${t.scheme}`, '-a', t.attributes,
        '-u', f.pub!, '-r', f.priv!];
      // New object's authValue: also only accepted on the command line by 5.4 (pitfall 4), factory step only.
      if (t.authValue) args.push('-p', `hex:${hex(t.authValue)}`);
      if (t.authPolicy) args.push('-L', f.policy!);
      await this.run('tpm2_create', args);
      return { public: new Uint8Array(await readFile(f.pub!)), private: new Uint8Array(await readFile(f.priv!)) };
    }));
  }

  createSealed(parent: KeyRef, parentAuth: Auth, t: SealTemplate): Promise<KeyBlob> {
    if (t.data.length < 1 || t.data.length > 128) {
      return Promise.reject(new EvccError('CONFIG_INVALID', 'sealed data must be 1..128 bytes (MAX_SYM_DATA)', { length: t.data.length }));
    }
    return this.locked(() => this.withFiles({ policy: t.authPolicy, pub: undefined, priv: undefined }, async (f) => {
      // `-i -`: the data comes through stdin; without -G the object is a keyedhash sealed data object.
      const args = ['-C', this.ref(parent), ...this.flag('-P', this.auth(parentAuth)), '-g', 'sha256', '-a', t.attributes ?? 'fixedtpm|fixedparent',
        '-i', '-', '-u', f.pub!, '-r', f.priv!];
      if (t.authPolicy) args.push('-L', f.policy!);
      await this.runWith('tpm2_create', args, true, t.data);
      return { public: new Uint8Array(await readFile(f.pub!)), private: new Uint8Array(await readFile(f.priv!)) };
    }));
  }

  unseal(key: KeyRef, auth: Auth): Promise<Uint8Array> {
    return this.locked(async () => {
      const out = await this.runWith('tpm2_unseal', ['-c', this.ref(key), ...this.flag('-p', this.auth(auth))], true);
      const copy = Uint8Array.from(out);
      out.fill(0);
      return copy;
    });
  }

  private flag(name: string, value: string[]): string[] {
    return value.length ? [name, value[0]!] : [];
  }

  load(parent: KeyRef, parentAuth: Auth, blob: KeyBlob, contextName: string): Promise<KeyRef> {
    return this.locked(() => this.withFiles({ pub: blob.public, priv: blob.private }, async (f) => {
      const ctx = this.ctxFile(contextName);
      await this.run('tpm2_load', ['-C', this.ref(parent), ...this.flag('-P', this.auth(parentAuth)), '-u', f.pub!, '-r', f.priv!, '-c', ctx]);
      await chmod(ctx, 0o600); // tpm2-tools writes with the process umask
      // Without a resource manager the loaded object stays in a slot; its saved context stays valid after the flush.
      this.pendingFlush ||= !this.resourceManager;
      return { context: contextName };
    }));
  }

  hasContext(contextName: string): Promise<boolean> {
    return stat(this.ctxFile(contextName)).then(() => true, () => false);
  }

  async forgetContext(contextName: string): Promise<void> {
    await rm(this.ctxFile(contextName), { force: true });
  }

  persist(key: KeyRef, handle: number): Promise<void> {
    return this.locked(async () => {
      await this.run('tpm2_evictcontrol', ['-C', 'o', '-c', this.ref(key), `0x${handle.toString(16)}`]);
    });
  }

  importDuplicate(parent: KeyRef, parentAuth: Auth, dup: { public: Uint8Array; duplicate: Uint8Array; encryptedSeed: Uint8Array }): Promise<Uint8Array> {
    return this.locked(() => this.withFiles({ pub: dup.public, dpriv: dup.duplicate, seed: dup.encryptedSeed, priv: undefined }, async (f) => {
      await this.run('tpm2_import', ['-C', this.ref(parent), ...this.flag('-P', this.auth(parentAuth)), '-u', f.pub!, '-i', f.dpriv!, '-s', f.seed!, '-r', f.priv!]);
      return new Uint8Array(await readFile(f.priv!));
    }));
  }

  // ---- NV counter -----------------------------------------------------------------------------------------

  nvDefineCounter(index: number, options: { writePolicy?: Uint8Array } = {}): Promise<void> {
    return this.locked(() => this.withFiles({ policy: options.writePolicy }, async (f) => {
      const args = [`0x${index.toString(16)}`, '-C', 'o', '-s', '8'];
      if (options.writePolicy) args.push('-a', 'nt=counter|policywrite|authread|no_da', '-L', f.policy!);
      else args.push('-a', 'nt=counter|ownerwrite|ownerread|authread|no_da');
      await this.run('tpm2_nvdefine', args);
    }));
  }

  nvIncrement(index: number, auth?: Auth, opts: { as?: 'owner' | 'index' } = {}): Promise<void> {
    const h = `0x${index.toString(16)}`;
    return this.locked(async () => {
      const authArgs = auth ? ['-C', opts.as === 'owner' ? 'o' : h, ...this.flag('-P', this.auth(auth))] : ['-C', 'o'];
      await this.run('tpm2_nvincrement', [h, ...authArgs]);
    });
  }

  nvReadCounter(index: number): Promise<bigint> {
    return this.locked(() => this.withFiles({ out: undefined }, async (f) => {
      const h = `0x${index.toString(16)}`;
      await this.run('tpm2_nvread', [h, '-C', h, '-s', '8', '-o', f.out!]);
      const b = await readFile(f.out!);
      if (b.length !== 8) throw new EvccError('TPM_TOOL_FAILED', 'NV counter read returned wrong size', { size: b.length });
      return b.readBigUInt64BE(0);
    }));
  }

  nvName(index: number): Promise<Uint8Array> {
    return this.locked(async () => {
      const out = await this.run('tpm2_nvreadpublic', [`0x${index.toString(16)}`]);
      const m = /name:\s*([0-9a-fA-F]+)/.exec(out);
      if (!m) throw new EvccError('TPM_TOOL_FAILED', 'NV name missing from tpm2_nvreadpublic output');
      return new Uint8Array(Buffer.from(m[1]!, 'hex'));
    });
  }

  // ---- external key: name, signature verification -> ticket -----------------------------------------------

  externalKeyName(publicKeyPem: string): Promise<Uint8Array> {
    return this.locked(() => this.withFiles({ pem: publicKeyPem, ctx: undefined, name: undefined }, async (f) => {
      await this.run('tpm2_loadexternal', ['-C', 'o', '-G', 'ecc', '-u', f.pem!, '-c', f.ctx!, '-n', f.name!]);
      this.pendingFlush ||= !this.resourceManager;
      return new Uint8Array(await readFile(f.name!));
    }));
  }

  verifySignature(publicKeyPem: string, message: Uint8Array, signatureDer: Uint8Array): Promise<{ keyName: Uint8Array; ticket: Uint8Array }> {
    return this.locked(() => this.withFiles({ pem: publicKeyPem, ctx: undefined, name: undefined, msg: message, sig: signatureDer, ticket: undefined }, async (f) => {
      // -C o: in the default NULL hierarchy verifysignature exits 0 without writing a ticket (TPM.md pitfall 8).
      await this.run('tpm2_loadexternal', ['-C', 'o', '-G', 'ecc', '-u', f.pem!, '-c', f.ctx!, '-n', f.name!]);
      this.pendingFlush ||= !this.resourceManager;
      await this.run('tpm2_verifysignature', ['-c', f.ctx!, '-g', 'sha256', '-m', f.msg!, '-s', f.sig!, '-f', 'ecdsa', '-t', f.ticket!]);
      this.pendingFlush ||= !this.resourceManager;
      const ticket = await readFile(f.ticket!).catch(() => undefined);
      if (!ticket?.length) throw new EvccError('TPM_TOOL_FAILED', 'tpm2_verifysignature wrote no ticket');
      return { keyName: new Uint8Array(await readFile(f.name!)), ticket: new Uint8Array(ticket) };
    }));
  }

  // ---- PCRs -----------------------------------------------------------------------------------------------

  pcrRead(bank: PcrBank, pcr: number): Promise<Uint8Array> {
    return this.locked(() => this.withFiles({ out: undefined }, async (f) => {
      await this.run('tpm2_pcrread', [`${bank}:${pcr}`, '-o', f.out!]);
      return new Uint8Array(await readFile(f.out!));
    }));
  }

  pcrExtend(bank: PcrBank, pcr: number, digest: Uint8Array): Promise<void> {
    return this.locked(async () => void (await this.run('tpm2_pcrextend', [`${pcr}:${bank}=${hex(digest)}`])));
  }

  // ---- sessions -------------------------------------------------------------------------------------------

  private newSession(trial: boolean): SessionEntry {
    const id = `s${++this.sessionSeq}`;
    return { id, trial, file: join(this.workDir, `${id}.session.ctx`), generation: this.generation };
  }

  startPolicySession(salt?: SaltKey): Promise<PolicySession> {
    return this.locked(async () => {
      const s = this.newSession(false);
      await this.withFiles({ name: salt?.name }, async (f) => {
        // Salted with the SRK and its name checked, so the session's HMAC key never travels in clear (pitfall 5).
        await this.run('tpm2_startauthsession', ['--policy-session', '-S', s.file, ...(salt ? ['-c', `0x${salt.handle.toString(16)}`, '-n', f.name!] : [])]);
      });
      s.generation = this.generation;
      this.sessions.set(s.id, s);
      return { id: s.id, trial: false };
    });
  }

  startTrialSession(): Promise<PolicySession> {
    return this.locked(async () => {
      const s = this.newSession(true);
      await this.run('tpm2_startauthsession', ['-S', s.file]); // trial is the tool's default (pitfall 6)
      s.generation = this.generation;
      this.sessions.set(s.id, s);
      return { id: s.id, trial: true };
    });
  }

  policy(session: PolicySession, steps: PolicyStep[]): Promise<Uint8Array | undefined> {
    return this.locked(() => this.withFiles({ digest: undefined }, async (f) => {
      for (const [i, step] of steps.entries()) {
        const s = this.session(session);
        const last = i === steps.length - 1 && s.trial ? ['-L', f.digest!] : [];
        await this.policyStep(s, step, last);
      }
      return this.session(session).trial ? new Uint8Array(await readFile(f.digest!)) : undefined;
    }));
  }

  private policyStep(s: SessionEntry, step: PolicyStep, out: string[]): Promise<void> {
    switch (step.kind) {
      case 'pcr':
        return this.withFiles({ expected: step.expectedValue }, async (f) => {
          await this.run('tpm2_policypcr', ['-S', s.file, '-l', `${step.bank}:${step.pcrs.join(',')}`, ...(step.expectedValue ? ['-f', f.expected!] : []), ...out]);
        });
      case 'nv':
        return this.withFiles({ operand: step.operandB }, async (f) => {
          // operandA is the NV content: 'ule' asserts counter <= version (TPM.md pitfall 10)
          await this.run('tpm2_policynv', ['-S', s.file, '-i', f.operand!, `0x${step.index.toString(16)}`, step.operation, ...out]);
        });
      case 'authorize':
        return this.withFiles({ approved: step.approvedPolicy, ref: step.policyRef, name: step.keyName, ticket: step.ticket }, async (f) => {
          await this.run('tpm2_policyauthorize', ['-S', s.file, '-i', f.approved!, '-q', f.ref!, '-n', f.name!,
            ...(step.ticket ? ['-t', f.ticket!] : []), ...out]);
        });
      case 'authValue':
        return this.run('tpm2_policyauthvalue', ['-S', s.file, ...out]).then(() => undefined);
      case 'commandCode':
        return this.run('tpm2_policycommandcode', ['-S', s.file, ...out, `0x${step.code.toString(16)}`]).then(() => undefined);
    }
  }

  flushSession(session: PolicySession): Promise<void> {
    return this.locked(async () => {
      const s = this.sessions.get(session.id);
      if (!s) return;
      this.sessions.delete(session.id);
      if (s.generation === this.generation) await this.run('tpm2_flushcontext', [s.file]);
      await rm(s.file, { force: true });
    });
  }

  // ---- key use --------------------------------------------------------------------------------------------

  sign(key: KeyRef, auth: Auth, digest: Uint8Array): Promise<Uint8Array> {
    if (digest.length !== 32) return Promise.reject(new EvccError('KEYS_DIGEST_INVALID', 'digest must be 32 bytes (SHA-256)', { length: digest.length }));
    return this.locked(() => this.withFiles({ digest, sig: undefined }, async (f) => {
      await this.run('tpm2_sign', ['-c', this.ref(key), ...this.flag('-p', this.auth(auth)), '-g', 'sha256', '-d', '-f', 'plain', '-o', f.sig!, f.digest!]);
      return new Uint8Array(await readFile(f.sig!));
    }));
  }

  quote(key: KeyRef, auth: Auth, bank: PcrBank, pcrs: number[], qualifyingData: Uint8Array): Promise<{ attest: Uint8Array; signature: Uint8Array; pcrValues: Uint8Array[] }> {
    const sorted = [...new Set(pcrs)].sort((a, b) => a - b);
    if (!sorted.length || sorted.some((p) => !Number.isInteger(p) || p < 0 || p > 23)) return Promise.reject(new EvccError('CONFIG_INVALID', `bad PCR selection ${pcrs.join(',')}`));
    if (qualifyingData.length > 64) return Promise.reject(new EvccError('CONFIG_INVALID', 'quote qualifying data longer than 64 bytes'));
    return this.locked(() => this.withFiles({ msg: undefined, sig: undefined, pcrs: undefined }, async (f) => {
      await this.run('tpm2_quote', ['-c', this.ref(key), ...this.flag('-p', this.auth(auth)), '-l', `${bank}:${sorted.join(',')}`,
        ...(qualifyingData.length ? ['-q', hex(qualifyingData)] : []), '-g', 'sha256', '-m', f.msg!, '-s', f.sig!, '-f', 'plain', '-o', f.pcrs!, '-F', 'values']);
      const values = new Uint8Array(await readFile(f.pcrs!));
      if (values.length !== 32 * sorted.length) throw new EvccError('TPM_TOOL_FAILED', 'tpm2_quote wrote PCR values of an unexpected size', { command: 'tpm2_quote', size: values.length });
      return {
        attest: new Uint8Array(await readFile(f.msg!)), signature: new Uint8Array(await readFile(f.sig!)),
        pcrValues: sorted.map((_, i) => values.slice(32 * i, 32 * i + 32)),
      };
    }));
  }

  ecdhKeyGen(key: KeyRef): Promise<{ ephemeralPublic: Uint8Array }> {
    return this.locked(() => this.withFiles({ pub: undefined, z: undefined }, async (f) => {
      await this.run('tpm2_ecdhkeygen', ['-c', this.ref(key), '-u', f.pub!, '-o', f.z!]);
      return { ephemeralPublic: new Uint8Array(await readFile(f.pub!)) };
    }));
  }

  /**
   * The shared point is a secret (ISO 15118-2 contract-key transport: its x-coordinate keys the AES decryption), so
   * it never reaches a file: tpm2_ecdhzgen insists on `-o FILE` and cannot write to Node's stdio (socketpairs,
   * PLATFORM.md), so `-o` names a FIFO in the 0700 work dir that this process holds open (O_RDWR|O_NONBLOCK, so
   * neither side blocks and a failed tool leaves nothing to wait for). The bytes pass through the kernel's pipe
   * buffer only; the FIFO node is removed afterwards.
   */
  ecdhZGen(key: KeyRef, auth: Auth, ephemeralPublic: Uint8Array): Promise<Uint8Array> {
    return this.locked(() => this.withFiles({ pub: ephemeralPublic }, async (f) => {
      const fifo = this.scratch('z.fifo');
      const made = await execa('mkfifo', ['-m', '600', fifo], { reject: false });
      if (made.exitCode !== 0) throw new EvccError('TPM_TOOL_FAILED', `mkfifo failed: ${String(made.stderr).trim()}`, { command: 'mkfifo' });
      let fd: number | undefined;
      try {
        fd = openSync(fifo, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
        await this.run('tpm2_ecdhzgen', ['-c', this.ref(key), ...this.flag('-p', this.auth(auth)), '-u', f.pub!, '-o', fifo]);
        // tpm2_ecdhzgen (5.4) does not save its authorisation session back: the session stays loaded in the TPM and
        // its file is stale (flushing it by file gives 0x1CB, TPM.md pitfall 3). Consume it: flush loaded sessions
        // (the other sessions of this driver are context-saved, not loaded) and forget the entry.
        if (auth.kind === 'policy') await this.consumeSession(auth.session);
        const buf = Buffer.alloc(512);
        let n = 0;
        try {
          n = readSync(fd, buf, 0, buf.length, null);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        }
        const point = Uint8Array.from(buf.subarray(0, n));
        buf.fill(0);
        if (n === 0) throw new EvccError('TPM_TOOL_FAILED', 'tpm2_ecdhzgen wrote no point', { command: 'tpm2_ecdhzgen' });
        return point;
      } finally {
        if (fd !== undefined) closeSync(fd);
        await rm(fifo, { force: true });
      }
    }));
  }

  private async consumeSession(session: PolicySession): Promise<void> {
    if (this.resourceManager) return this.dropSessions([session.id]); // -l would see only its own connection's
    const e = this.sessions.get(session.id);
    this.sessions.delete(session.id);
    if (e) await rm(e.file, { force: true });
    await this.exec('tpm2_flushcontext', ['-l']).catch(() => undefined);
  }

  rsaEncrypt(key: KeyRef, message: Uint8Array): Promise<Uint8Array> {
    return this.locked(() => this.withFiles({ msg: message, out: undefined }, async (f) => {
      await this.run('tpm2_rsaencrypt', ['-c', this.ref(key), '-o', f.out!, f.msg!]);
      return new Uint8Array(await readFile(f.out!));
    }));
  }

  rsaDecrypt(key: KeyRef, auth: Auth, ciphertext: Uint8Array): Promise<Uint8Array> {
    return this.locked(() => this.withFiles({ msg: ciphertext, out: undefined }, async (f) => {
      await this.run('tpm2_rsadecrypt', ['-c', this.ref(key), ...this.flag('-p', this.auth(auth)), '-o', f.out!, f.msg!]);
      return new Uint8Array(await readFile(f.out!));
    }));
  }

  shutdown(type: ShutdownType): Promise<void> {
    return this.locked(async () => void (await this.run('tpm2_shutdown', type === 'clear' ? ['-c'] : [])));
  }

  flushAll(): Promise<void> {
    return this.locked(() => this.recover());
  }

  async close(): Promise<void> {
    await this.locked(async () => {
      if (this.pendingFlush) await this.exec('tpm2_flushcontext', ['-t']).catch(() => undefined);
      for (const s of this.sessions.values()) {
        if (s.generation === this.generation) await this.exec('tpm2_flushcontext', [s.file]).catch(() => undefined);
      }
      this.sessions.clear();
      await rm(this.workDir, { recursive: true, force: true });
    });
  }
}
