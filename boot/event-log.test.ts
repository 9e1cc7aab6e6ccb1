import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isEvccError } from '../core/errors.ts';
import { pcrAfterExtend, toHex } from '../firmware/keys/policy.ts';
import { parseEventLog, replayEventLog, rootfsMeasurement } from './event-log.ts';

const zero = '0'.repeat(64);
const digest = createHash('sha256').update('rootfs image').digest('hex');
const line = (d: string, before = zero, extra = '') => `pcr=14 bank=sha256 event=rootfs digest=${d} before=${before} size=whole read=ok${extra} source=/dev/mmcblk0p2`;
const log = (...lines: string[]) => `# evcc-measure-log/1\n${lines.join('\n')}\n`;

describe('measurement event log (the initramfs hook writes it, evcc boot replays it)', () => {
  it('parses the hook\'s line format, source last (it may hold spaces)', () => {
    const [e, f] = parseEventLog(log(`pcr=14 bank=sha256 event=rootfs digest=${digest} before=unreadable size=65536 read=failed source=/srv/slot A.img`,
      `pcr=14 bank=sha256 event=rootfs digest=${digest} before=${zero} size=4194304(ext4) read=ok source=/dev/mmcblk0p2`));
    expect(e).toMatchObject({ pcr: 14, event: 'rootfs', size: 65536, sizeFrom: 'given', read: 'failed', source: '/srv/slot A.img' });
    expect(f).toMatchObject({ size: 4194304, sizeFrom: 'ext4' });
    expect(e!.before).toBeUndefined();
    expect(toHex(e!.digest)).toBe(digest);
  });

  it('one rootfs event from zero replays to H(0^32 || digest) and is the measurement', () => {
    const events = parseEventLog(log(line(digest)));
    const pcr = pcrAfterExtend(Buffer.from(digest, 'hex'));
    expect(toHex(replayEventLog(events, 14))).toBe(toHex(pcr));
    expect(toHex(rootfsMeasurement(events, 14, pcr).digest)).toBe(digest);
  });

  it('a PCR other than the replay is refused with the reason: extended after the hook, or not zero before it', () => {
    const events = parseEventLog(log(line(digest)));
    const extendedAfter = pcrAfterExtend(new Uint8Array(32), pcrAfterExtend(Buffer.from(digest, 'hex')));
    expect(() => rootfsMeasurement(events, 14, extendedAfter)).toThrow(/outside the initramfs hook/);
    const before = 'ab'.repeat(32);
    const warm = parseEventLog(log(line(digest, before)));
    expect(() => rootfsMeasurement(warm, 14, pcrAfterExtend(Buffer.from(digest, 'hex'), Buffer.from(before, 'hex')))).toThrow(/not zero when the initramfs measured/);
  });

  it('a log that replays but holds more than the one measurement is refused (BOOT_PCR_UNEXPECTED)', () => {
    const events = parseEventLog(log(line(digest), line(digest)));
    const pcr = replayEventLog(events, 14);
    expect(() => rootfsMeasurement(events, 14, pcr)).toThrow(expect.objectContaining({ code: 'BOOT_PCR_UNEXPECTED' }));
    expect(() => rootfsMeasurement([], 14, new Uint8Array(32))).toThrow(expect.objectContaining({ code: 'BOOT_PCR_UNEXPECTED' }));
  });

  it('malformed logs are typed errors: header, fields, digests, duplicates', () => {
    for (const bad of ['', 'pcr=14', log('pcr=14 bank=sha256'), log(line('xyz')), log(line(digest, zero, ' pcr=15')), log(line(digest).replace('pcr=14', 'pcr=24')),
      log(line(digest).replace('bank=sha256', 'bank=sha1')), log(line(digest).replace('size=whole', 'size=-1'))]) {
      expect(() => parseEventLog(bad), bad).toThrow(expect.objectContaining({ code: 'BOOT_EVENT_LOG_MALFORMED' }));
    }
  });

  it('arbitrary text never throws anything but a typed error', () => {
    fc.assert(fc.property(fc.string({ maxLength: 400 }), (text) => {
      try {
        parseEventLog(`# evcc-measure-log/1\n${text}`);
      } catch (err) {
        if (!isEvccError(err, 'BOOT_EVENT_LOG_MALFORMED')) throw err;
      }
    }), { numRuns: 2000 });
  });
});
