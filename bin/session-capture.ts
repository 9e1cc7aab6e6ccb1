/**
 * Composition of the per-session capture (issue #11): a session folder (hal/capture), the runtime's log records
 * teed into it, the decoded message log and the session event stream (firmware/capture/records.ts), the TLS key
 * log when the policy allows one. Shared by `evcc bench-session`, `evcc charge` and `evcc run`; each wraps its own
 * HAL parts with the taps that fit them (simulated link + reconstruction, or an AF_PACKET ETH_P_ALL tap).
 */
import { messageLogRecord, SessionEventHub } from '../firmware/capture/records.ts';
import type { MessageRecord } from '../firmware/session/driver.ts';
import { SessionFolder } from '../hal/capture/session-folder.ts';
import type { FrameSink } from '../hal/capture/types.ts';
import type { Runtime } from './runtime.ts';

export interface SessionCapture {
  readonly folder: SessionFolder;
  readonly dir: string;
  readonly id: string;
  /** Declares a tap interface (pcapng IDB). */
  sink(name: string, description: string): FrameSink;
  /** For VehicleParts.onMessage. */
  onMessage(record: MessageRecord): void;
  /** For VehicleParts.keyLog; absent when the key log is off. */
  keyLog?: (line: string) => void;
  /** Writes the report, closes the files, says where the folder is. */
  finish(report: { ok?: boolean; endReason?: { code: string } } & object): Promise<CaptureSummary>;
}

export interface CaptureSummary {
  dir: string;
  id: string;
  packets: number;
  messages: number;
  keyLog: boolean;
  /** Set when a write failed and the capture stopped early (the session went on). */
  failed?: string;
}

export { captureParentDir, decideKeyLog } from './capture-policy.ts';

export async function openSessionCapture(rt: Runtime, o: { parent: string; keyLog: boolean; keep?: number; events?: SessionEventHub }): Promise<SessionCapture> {
  const folder = await SessionFolder.create({ parent: o.parent, keyLog: o.keyLog, ...(o.keep !== undefined ? { keep: o.keep } : {}) });
  const events = o.events ?? new SessionEventHub();
  const offLog = rt.onLogLine((line) => folder.logLine(line));
  let seq = 0;
  const log = rt.log('EVCC');
  log.info({ cp: 'CAPTURE_STARTED', dir: folder.dir, keyLog: o.keyLog }, `session capture: ${folder.dir}`);
  events.emit({ type: 'session-start', id: folder.id, dir: folder.dir, time: new Date().toISOString() });
  const keyLog = folder.keyLog;
  return {
    folder, dir: folder.dir, id: folder.id,
    sink: (name, description) => folder.openInterface(name, description),
    onMessage: (r) => {
      const rec = messageLogRecord(r, ++seq, Date.now());
      folder.message(rec);
      events.emit({ type: 'message', record: rec });
    },
    ...(keyLog ? { keyLog } : {}),
    async finish(report) {
      offLog();
      await folder.writeReport(report).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'session report not written to the capture folder'));
      await folder.close();
      const failed = folder.failure ? (folder.failure as Error).message : undefined;
      const s = folder.stats;
      if (failed) log.warn({ cp: 'CAPTURE_INCOMPLETE', dir: folder.dir, reason: failed }, `session capture stopped early: ${failed}`);
      log.info({ cp: 'CAPTURE_DONE', dir: folder.dir, packets: s.packets, messages: s.messages }, `session capture written: ${folder.dir} (${s.packets} packets, ${s.messages} messages)`);
      events.emit({ type: 'session-end', id: folder.id, time: new Date().toISOString(), ok: report.ok ?? false, ...(report.endReason ? { code: report.endReason.code } : {}) });
      return { dir: folder.dir, id: folder.id, packets: s.packets, messages: s.messages, keyLog: o.keyLog, ...(failed ? { failed } : {}) };
    },
  };
}
