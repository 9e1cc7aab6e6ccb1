/**
 * `evcc session show DIR` — the compact timeline of a captured session (stages, messages, timings, errors), decoded
 * from the folder's own pcapng (TLS decrypted with its keys.log) rather than from the message log, so a capture
 * from any evcc (or any EV, with a key log) can be read.
 * `evcc session replay DIR` — the captured charger as a charger-simulator scenario (sim/secc), to replay a field
 * session against our EV: `evcc bench-session --scenario FILE`.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { EvccError } from '../../core/errors.ts';
import { decodeConnection, type CapturedV2gMessage } from '../../firmware/capture/decode.ts';
import { scenarioFromSession } from '../../firmware/capture/replay.ts';
import { formatTimeline, sessionTimeline, type TimelineInput } from '../../firmware/capture/timeline.ts';
import { readSessionCapture, type CapturedConnection } from '../../hal/capture/read-session.ts';
import { readManifest, SESSION_FILES, type SessionManifest } from '../../hal/capture/session-folder.ts';
import { parseScenario } from '../../sim/secc/scenario.ts';
import type { GlobalOptions } from '../runtime.ts';

interface LoadedSession {
  manifest: SessionManifest;
  input: TimelineInput;
  connections: (CapturedConnection & { messages: CapturedV2gMessage[] })[];
  report?: Record<string, any>;
}

async function loadSession(dir: string): Promise<LoadedSession> {
  const manifest = await readManifest(dir);
  const capture = await readSessionCapture(dir);
  const connections = capture.connections.map((c) => ({ ...c, messages: decodeConnection(c) }));
  const reportText = await readFile(join(dir, SESSION_FILES.report), 'utf8').catch(() => undefined);
  let report: Record<string, any> | undefined;
  try {
    report = reportText ? (JSON.parse(reportText) as Record<string, any>) : undefined;
  } catch {
    report = undefined;
  }
  const logText = await readFile(join(dir, SESSION_FILES.benchLog), 'utf8').catch(() => '');
  const logErrors: NonNullable<TimelineInput['logErrors']> = [];
  for (const line of logText.split('\n')) {
    if (!line) continue;
    try {
      const r = JSON.parse(line) as { level?: string | number; time?: number; sub?: string; msg?: string; code?: string };
      if (r.level === 'error' || r.level === 'fatal' || (typeof r.level === 'number' && r.level >= 50)) logErrors.push({ ...(r.time !== undefined ? { time: r.time } : {}), ...(r.sub ? { sub: r.sub } : {}), ...(r.msg ? { msg: r.msg } : {}), ...(r.code ? { code: r.code } : {}) });
    } catch {
      // a torn last line of a crashed session: skip
    }
  }
  const input: TimelineInput = { ...capture, connections, logErrors, ...(report ? { report } : {}) };
  return { manifest, input, connections, ...(report ? { report } : {}) };
}

const jsonText = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? Buffer.from(x).toString('hex') : x), 2);

export function registerSession(program: Command, _globals: () => GlobalOptions): void {
  const session = program.command('session').description('per-session capture folders: show a timeline, replay the charger as a simulator scenario');

  session.command('show')
    .description('compact timeline of a captured session (SLAC, SDP, TCP/TLS, V2G messages with timings, errors), decoded from its pcapng')
    .argument('<dir>', 'session folder (session.pcapng, keys.log, …)')
    .option('--json', 'the timeline and every decoded message as JSON')
    .action(async (dir: string, o: { json?: boolean }) => {
      const s = await loadSession(dir);
      const lines = sessionTimeline(s.input);
      if (o.json) {
        process.stdout.write(`${jsonText({ id: s.manifest.id, started: s.manifest.started, timeline: lines, messages: s.connections.flatMap((c) => c.messages.map(({ v2gtp: _omit, ...m }) => m)) })}\n`);
        return;
      }
      process.stdout.write(`session ${s.manifest.id} (started ${s.manifest.started}, ${s.input.packets} packets${s.input.keyLog ? ', TLS key log' : ''})\n${formatTimeline(lines)}\n`);
    });

  session.command('replay')
    .description('turn a captured session into a charger-simulator scenario replaying the charger\'s answers (run it: evcc bench-session --scenario FILE)')
    .argument('<dir>', 'session folder')
    .option('-o, --out <file>', 'write the scenario here (default: stdout)')
    .action(async (dir: string, o: { out?: string }) => {
      const s = await loadSession(dir);
      // The V2G connection: the last one that carried V2G messages (a TLS retry after a root fetch leaves an empty first).
      const conn = [...s.connections].reverse().find((c) => c.messages.length > 0);
      if (!conn) throw new EvccError('CAPTURE_INVALID', `${dir}: the capture holds no V2G messages to replay${s.input.keyLog ? '' : ' (TLS without keys.log cannot be decoded)'}`, { dir });
      const fetchedRoot = Boolean(s.report?.channel?.installedRoot);
      const scenario = scenarioFromSession({
        messages: conn.messages, transport: { tls: conn.tls, ...(conn.decryption?.version ? { version: conn.decryption.version } : {}) },
        ...(conn.end ? { end: conn.end } : {}), ...(conn.resetBy ? { resetBy: conn.resetBy } : {}),
        chain: fetchedRoot ? 'pki-b' : 'pki-a', origin: s.manifest.id,
      });
      parseScenario(scenario, `replay-${s.manifest.id}`); // the simulator must accept it as is
      const text = `${JSON.stringify(scenario, null, 2)}\n`;
      if (o.out) {
        await writeFile(o.out, text);
        process.stderr.write(`scenario written to ${o.out}: evcc bench-session --scenario ${o.out}\n`);
      } else {
        process.stdout.write(text);
      }
    });
}
