import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OEM_BACKEND_USER, type MosquittoBroker } from './mosquitto.ts';

/**
 * OEM backend instances as deployed: each one `evcc oem-backend` process (node + tsx, so a signal reaches the
 * service itself) with the backend's link identity, joined to the default shared-subscription group. The instance
 * records its stderr lines and the request ids it answered (from its one-line-per-request log), so a test can tell
 * which instance served what. Used by the scale-out test and the scale-out bench.
 */
export interface BackendInstance {
  readonly name: string;
  readonly proc: ChildProcess;
  /** Bench-format stderr lines so far. */
  readonly lines: string[];
  /** Request ids this instance logged as answered, in order. */
  readonly answered: string[];
  readonly exit: Promise<number | null>;
  /** Resolves once the instance logged "OEM backend ready" (subscriptions acknowledged). */
  readonly ready: Promise<void>;
}

/** Writes the link identity (CA, backend certificate + key) and the answer key into `dir`; the CLI flags for them. */
export async function backendFlags(broker: MosquittoBroker, dir: string, answerKeyPem: string, poolDir: string): Promise<string[]> {
  const id = await broker.identity(OEM_BACKEND_USER);
  await writeFile(join(dir, 'ca.pem'), broker.ca.certPem);
  await writeFile(join(dir, 'backend.pem'), id.cert as string);
  await writeFile(join(dir, 'backend.key'), id.key as string, { mode: 0o600 });
  await writeFile(join(dir, 'answer.key'), answerKeyPem, { mode: 0o600 });
  return ['--pool', poolDir, '--broker', broker.url, '--signing-key', join(dir, 'answer.key'),
    '--ca', join(dir, 'ca.pem'), '--cert', join(dir, 'backend.pem'), '--key', join(dir, 'backend.key')];
}

const ANSWERED = /request answered: \S+.* requestId=([0-9a-f]+)/;

/** Starts one instance; `globalFlags` go before the subcommand (e.g. --log-level), `flags` after it. */
export function startBackendInstance(name: string, flags: string[], globalFlags: string[] = []): BackendInstance {
  const evcc = join(process.cwd(), 'bin/evcc.ts');
  const proc = spawn(process.execPath, ['--import', 'tsx', evcc, ...globalFlags, 'oem-backend', '--client-id', `oem-backend-${name}`, ...flags], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const lines: string[] = [];
  const answered: string[] = [];
  let partial = '';
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  proc.stderr!.on('data', (b: Buffer) => {
    const text = partial + b.toString('utf8');
    const parts = text.split('\n');
    partial = parts.pop() ?? '';
    for (const l of parts) {
      if (!l) continue;
      lines.push(l);
      const m = ANSWERED.exec(l);
      if (m) answered.push(m[1]!);
      else if (l.includes('OEM backend ready')) onReady();
    }
  });
  const exit = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { name, proc, lines, answered, exit, ready };
}
