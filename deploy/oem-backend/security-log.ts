import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { FileStore } from '../../hal/store/types.ts';
import { VEHICLE_ID_PATTERN } from '../../firmware/ota/constants.ts';
import { logKeyId, verifySecurityLog, type LogVerification } from '../../firmware/log/security-log.ts';

/**
 * The OEM backend's side of the vehicles' security logs (TR-2019-04 §3.3.4): each vehicle's log key (public part of
 * the provisioning export, `security-log.pub.pem`) is registered at production; uploads are continuations of what
 * the backend holds. Each is verified with that key alone (chain from the stored head, every checkpoint signature)
 * before a byte is stored, so the backend's copy is append-only and authenticated: a vehicle whose log was cut
 * short or rewritten after an upload cannot extend the stored head any more (LOG_CHAIN_BROKEN) — the truncation a
 * verifier of the vehicle's file alone cannot see.
 *
 * Files (the backend's data dir): `security-logs/<vehicle>.pub.pem` (registered key), `<vehicle>.jsonl` (entries as
 * received), `<vehicle>.head.json` (seq and hash of the last stored entry, what was proved about it).
 */
export type SecurityLogCollectorErrorCode = 'LOG_VEHICLE_UNKNOWN';

export interface StoredHead {
  /** Seq of the last stored entry. */
  seq: number;
  hash: string;
  signedThrough: number;
  unsignedCheckpoints: { seq: number; reason: string }[];
  updatedAt: string;
}

export interface UploadReceipt {
  vehicleId: string;
  accepted: number;
  head: StoredHead;
}

const dir = 'security-logs';
const path = (vehicleId: string, ext: 'pub.pem' | 'jsonl' | 'head.json'): string => `${dir}/${vehicleId}.${ext}`;

function checkId(vehicleId: string): void {
  if (!VEHICLE_ID_PATTERN.test(vehicleId)) throw new EvccError('CONFIG_INVALID', `vehicle id ${JSON.stringify(vehicleId)} not allowed`);
}

export class SecurityLogCollector {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly d: { store: FileStore; log: Logger; now?: () => Date }) {}

  /** Production: the vehicle's log key from its provisioning export. */
  async registerVehicle(vehicleId: string, logKeyPem: string): Promise<{ keyId: string }> {
    checkId(vehicleId);
    const keyId = logKeyId(logKeyPem);
    await this.d.store.writeAtomic(path(vehicleId, 'pub.pem'), logKeyPem, { mode: 0o644 });
    this.d.log.info({ vehicleId, keyId }, 'security-log key registered');
    return { keyId };
  }

  /** What the backend holds of the vehicle's log (the upload's starting point), undefined before the first upload. */
  async head(vehicleId: string): Promise<StoredHead | undefined> {
    checkId(vehicleId);
    const raw = await this.d.store.read(path(vehicleId, 'head.json'));
    return raw ? (JSON.parse(Buffer.from(raw).toString('utf8')) as StoredHead) : undefined;
  }

  /**
   * Verifies and stores an upload: `text` holds the entries after the stored head (the whole log from seq 0 the
   * first time). Throws the verification's typed error (the first bad entry) and stores nothing then.
   */
  accept(vehicleId: string, text: string): Promise<UploadReceipt> {
    const run = async (): Promise<UploadReceipt> => {
      checkId(vehicleId);
      const pem = await this.d.store.read(path(vehicleId, 'pub.pem'));
      if (!pem) throw new EvccError('LOG_VEHICLE_UNKNOWN', `no security-log key registered for vehicle ${vehicleId}`, { vehicleId });
      const held = await this.head(vehicleId);
      let proved: LogVerification;
      try {
        proved = verifySecurityLog(text, Buffer.from(pem).toString('utf8'), held ? { seq: held.seq + 1, head: held.hash } : undefined);
      } catch (err) {
        this.d.log.warn({ vehicleId, code: (err as EvccError).code, seq: (err as EvccError).details?.seq, held: held?.seq, cp: 'OEM-LOG-REFUSED' }, `security-log upload of ${vehicleId} refused: ${(err as Error).message}`);
        throw err;
      }
      const before = await this.d.store.read(path(vehicleId, 'jsonl'));
      await this.d.store.writeAtomic(path(vehicleId, 'jsonl'), Buffer.concat([before ?? Buffer.alloc(0), Buffer.from(text, 'utf8')]), { mode: 0o640 });
      const head: StoredHead = {
        seq: (held?.seq ?? -1) + proved.entries, hash: proved.head,
        signedThrough: proved.signedThrough >= 0 ? proved.signedThrough : (held?.signedThrough ?? -1),
        unsignedCheckpoints: [...(held?.unsignedCheckpoints ?? []), ...proved.unsignedCheckpoints].slice(-100),
        updatedAt: (this.d.now?.() ?? new Date()).toISOString(),
      };
      await this.d.store.writeAtomic(path(vehicleId, 'head.json'), `${JSON.stringify(head)}\n`, { mode: 0o640 });
      this.d.log.info({ vehicleId, accepted: proved.entries, seq: head.seq, signedThrough: head.signedThrough, unsigned: proved.unsignedCheckpoints.length, cp: 'OEM-LOG-STORED' },
        `security log of ${vehicleId}: ${proved.entries} entries stored through seq ${head.seq}${proved.unsignedCheckpoints.length ? ` (${proved.unsignedCheckpoints.length} unsigned checkpoint(s): ${proved.unsignedCheckpoints[0]!.reason})` : ''}`);
      return { vehicleId, accepted: proved.entries, head };
    };
    const next = this.chain.then(run, run);
    this.chain = next.catch(() => undefined);
    return next;
  }
}
