/**
 * One folder per session:
 *   session.pcapng   everything on the PLC interface (SLAC MMEs, SDP, TCP/TLS), one IDB per tap
 *   keys.log         TLS key log, NSS format (SSLKEYLOGFILE) — only when the key-log policy allowed it
 *   messages.jsonl   decoded message log (one V2G message per line)
 *   bench.jsonl      the runtime's log records during the session (JSON lines of the logger)
 *   report.json      the session report
 *   session.json     what the folder is (id, start, files): marks it as ours for retention and `evcc session`
 * Files are appended synchronously as events come, so a session cut short by a crash leaves a readable folder.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EvccError } from '../../core/errors.ts';
import { PcapngWriter } from './pcapng.ts';
import type { CaptureInterfaces, FrameSink } from './types.ts';

export const SESSION_FILES = {
  pcap: 'session.pcapng',
  keyLog: 'keys.log',
  messages: 'messages.jsonl',
  benchLog: 'bench.jsonl',
  report: 'report.json',
  manifest: 'session.json',
} as const;

export interface SessionManifest {
  format: 'evcc-session/1';
  id: string;
  started: string;
  ended?: string;
  keyLog: boolean;
  packets?: number;
  messages?: number;
}

export interface SessionFolderOptions {
  /** Parent dir of the session folders (created if missing, mode 0700: the folder may hold session secrets). */
  parent: string;
  keyLog: boolean;
  /** Folders kept under `parent` (older ones with a manifest are removed first). */
  keep?: number;
  /** Epoch ms with sub-ms resolution; default performance.timeOrigin + performance.now(). */
  now?: () => number;
}

const defaultNow = (): number => performance.timeOrigin + performance.now();

/** `20261203T081512Z-3fa2` */
function sessionId(ms: number): string {
  const iso = new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '');
  return `${iso}-${Math.floor(Math.random() * 0x10000).toString(16).padStart(4, '0')}`;
}

class LineFile {
  private fd: number | undefined;

  constructor(readonly path: string, mode = 0o600) {
    this.fd = openSync(path, 'wx', mode);
  }

  line(text: string): void {
    if (this.fd === undefined) return;
    writeSync(this.fd, text.endsWith('\n') ? text : `${text}\n`);
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

export class SessionFolder implements CaptureInterfaces {
  readonly pcap: PcapngWriter;
  private readonly messagesFile: LineFile;
  private readonly benchFile: LineFile;
  private readonly keyFile: LineFile | undefined;
  private messageCount = 0;
  private closed = false;
  private failed = false;
  /** The write failure that stopped this capture (the session went on without it). */
  failure: unknown = undefined;

  private constructor(readonly dir: string, readonly id: string, private readonly manifest: SessionManifest, private readonly now: () => number) {
    this.pcap = PcapngWriter.open(join(dir, SESSION_FILES.pcap));
    this.messagesFile = new LineFile(join(dir, SESSION_FILES.messages));
    this.benchFile = new LineFile(join(dir, SESSION_FILES.benchLog));
    this.keyFile = manifest.keyLog ? new LineFile(join(dir, SESSION_FILES.keyLog)) : undefined;
  }

  static async create(o: SessionFolderOptions): Promise<SessionFolder> {
    const now = o.now ?? defaultNow;
    try {
      await mkdir(o.parent, { recursive: true, mode: 0o700 });
      if (o.keep !== undefined) await prune(o.parent, o.keep - 1);
      const started = now();
      const id = sessionId(started);
      const dir = join(o.parent, id);
      await mkdir(dir, { mode: 0o700 });
      const manifest: SessionManifest = { format: 'evcc-session/1', id, started: new Date(started).toISOString(), keyLog: o.keyLog };
      await writeFile(join(dir, SESSION_FILES.manifest), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
      return new SessionFolder(dir, id, manifest, now);
    } catch (err) {
      if (err instanceof EvccError) throw err;
      throw new EvccError('CAPTURE_FAILED', `cannot create a session folder under ${o.parent}: ${(err as Error).message}`, { parent: o.parent }, { cause: err });
    }
  }

  openInterface(name: string, description: string): FrameSink {
    const id = this.pcap.addInterface({ name, description });
    return {
      frame: (frame, o) => this.guard(() => this.pcap.packet(id, frame, { atMs: o.atMs ?? this.now(), direction: o.direction })),
    };
  }

  /** NSS key log line (only when the policy allowed a key log; otherwise absent). */
  get keyLog(): ((line: string) => void) | undefined {
    const f = this.keyFile;
    return f ? (line: string) => this.guard(() => f.line(line.trim())) : undefined;
  }

  /** One decoded-message record (JSON-safe object). */
  message(record: object): void {
    this.messageCount++;
    this.guard(() => this.messagesFile.line(JSON.stringify(record)));
  }

  /** One logger record (its JSON line). */
  logLine(jsonLine: string): void {
    this.guard(() => this.benchFile.line(jsonLine));
  }

  async writeReport(report: unknown): Promise<void> {
    const path = join(this.dir, SESSION_FILES.report);
    await writeFile(`${path}.tmp`, `${JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`, { mode: 0o600 });
    await rename(`${path}.tmp`, path);
  }

  get stats(): { packets: number; messages: number } {
    return { packets: this.pcap.packets, messages: this.messageCount };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const f of [this.messagesFile, this.benchFile, this.keyFile]) f?.close();
    this.pcap.close();
    const m: SessionManifest = { ...this.manifest, ended: new Date(this.now()).toISOString(), packets: this.pcap.packets, messages: this.messageCount };
    await writeFile(join(this.dir, SESSION_FILES.manifest), `${JSON.stringify(m, null, 2)}\n`, { mode: 0o600 }).catch(() => undefined);
  }

  /**
   * The capture must never take the session down: the first write failure (disk full, …) stops the capture, the
   * session goes on. The caller learns it from `failure`.
   */
  private guard(write: () => void): void {
    if (this.failed || this.closed) return;
    try {
      write();
    } catch (err) {
      this.failed = true;
      this.failure = err;
    }
  }
}

/** Removes the oldest session folders (those with a manifest) until at most `keep` remain. */
async function prune(parent: string, keep: number): Promise<void> {
  const entries = await readdir(parent, { withFileTypes: true });
  const ours: string[] = [];
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const m = await readFile(join(parent, e.name, SESSION_FILES.manifest), 'utf8').catch(() => undefined);
    if (m && m.includes('"evcc-session/1"')) ours.push(e.name);
  }
  ours.sort(); // ids start with the UTC start time
  for (const name of ours.slice(0, Math.max(0, ours.length - keep))) await rm(join(parent, name), { recursive: true, force: true });
}

/** Reads a session folder's manifest; CAPTURE_INVALID when DIR is not one. */
export async function readManifest(dir: string): Promise<SessionManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, SESSION_FILES.manifest), 'utf8');
  } catch (err) {
    throw new EvccError('CAPTURE_INVALID', `${dir} is not a session folder (no ${SESSION_FILES.manifest})`, { dir }, { cause: err });
  }
  try {
    const m = JSON.parse(text) as SessionManifest;
    if (m.format !== 'evcc-session/1') throw new Error(`format ${String(m.format)}`);
    return m;
  } catch (err) {
    throw new EvccError('CAPTURE_INVALID', `${dir}/${SESSION_FILES.manifest} is not a session manifest: ${(err as Error).message}`, { dir }, { cause: err });
  }
}
