import { EvccError } from '../../core/errors.ts';
import { encodeEntry, type SecurityLog } from './security-log.ts';

/**
 * Upload of the security log's new entries to the OEM backend (deploy/oem-backend/security-log.ts), over whatever
 * carries the two calls (the OEM link's request/response). The backend answers with the head it holds; the vehicle
 * sends what follows it. A backend head this log does not contain means the vehicle's log was rewritten or cut
 * since the last upload: refused here (LOG_CHAIN_BROKEN), and the backend would refuse the continuation anyway.
 */
export interface SecurityLogBackend {
  /** Seq and hash of the last entry the backend stored; undefined before the first upload. */
  head(): Promise<{ seq: number; hash: string } | undefined>;
  /** The entries after that head, as log lines; resolves with the new head. */
  put(text: string): Promise<{ head: { seq: number; hash: string } }>;
}

/** Sends the entries after the backend's head, in messages of at most `maxBytes` of log lines each. */
export async function uploadSecurityLog(log: SecurityLog, backend: SecurityLogBackend, maxBytes = 256 * 1024): Promise<{ sent: number; through: number }> {
  const held = await backend.head();
  if (held) {
    const mine = log.entriesFrom(held.seq)[0];
    if (!mine || mine.seq !== held.seq || mine.hash !== held.hash) {
      throw new EvccError('LOG_CHAIN_BROKEN', `the OEM backend holds this vehicle's security log through seq ${held.seq}, which this log does not contain (rewritten or restarted since the last upload)`,
        { seq: held.seq, ...(mine ? { found: mine.hash } : {}) });
    }
  }
  const lines = log.entriesFrom(held ? held.seq + 1 : 0).map(encodeEntry);
  let through = held?.seq ?? -1;
  for (let i = 0; i < lines.length;) {
    let bytes = 0;
    let j = i;
    while (j < lines.length && (j === i || bytes + Buffer.byteLength(lines[j]!) <= maxBytes)) bytes += Buffer.byteLength(lines[j++]!);
    through = (await backend.put(lines.slice(i, j).join(''))).head.seq;
    i = j;
  }
  return { sent: lines.length, through };
}
