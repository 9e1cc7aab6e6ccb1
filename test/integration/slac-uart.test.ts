import { closeSync, writeSync } from 'node:fs';
import { ReadStream } from 'node:tty';
import { afterEach, expect, it } from 'vitest';
import { silentLogger } from '../../core/logger.ts';
import { toHex } from '../../firmware/slac/codec.ts';
import { runSlac } from '../../firmware/slac/driver.ts';
import { SystemClock } from '../../hal/clock/system.ts';
import { QcaUartLink } from '../../hal/plc/qca-uart.ts';
import { SimSegment } from '../../hal/plc/sim.ts';
import { describeWith } from '../support/prereq.ts';
import { openPty, ptyAvailable } from '../support/pty.ts';
import { startSimCharger, startSimEvModem, type SimCharger } from '../../sim/evse-slac/index.ts';
import { QcaUartBridge } from '../../sim/modem/uart-bridge.ts';

/**
 * SLAC over the QCA7000 UART transport: our EV's QcaUartLink (serialport on a pseudo-terminal) talks QCA serial
 * framing to a simulated modem, behind which two simulated chargers sit on an in-memory segment.
 */

const EV = '02:00:00:00:ee:07';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describeWith([ptyAvailable])('SLAC over a QCA7000 UART (pty)', () => {
  it('matches the lower-attenuation charger through the serial framing', async () => {
    const { master, slave, path: pty } = openPty();
    const masterIn = new ReadStream(master);
    cleanups.push(() => {
      masterIn.destroy();
      closeSync(slave);
    });
    const segment = new SimSegment();
    const clock = new SystemClock();
    const bridge = new QcaUartBridge(segment, EV, {
      write: (bytes) => void writeSync(master, bytes),
      onData: (cb) => {
        const h = (d: Buffer) => cb(d);
        masterIn.on('data', h);
        return () => masterIn.off('data', h);
      },
    });
    cleanups.push(() => bridge.close());
    const chargers: SimCharger[] = [
      startSimCharger(segment, { evseMac: '02:00:00:00:c0:11', clock, attenuationDb: 28, nmk: '11'.repeat(16) }),
      startSimCharger(segment, { evseMac: '02:00:00:00:c0:12', clock, attenuationDb: 14, nmk: '22'.repeat(16) }),
    ];
    for (const c of chargers) cleanups.push(() => c.close());
    const modem = startSimEvModem(segment, { hostMac: EV });
    cleanups.push(() => modem.close());

    const link = await QcaUartLink.open({ path: pty, mac: EV });
    cleanups.push(() => link.close());
    const result = await runSlac({ link, clock, log: silentLogger() });
    expect(result.evseMac).toBe('02:00:00:00:c0:12');
    expect(toHex(result.nmk)).toBe('22'.repeat(16));
    expect(result.evses.map((e) => [e.mac, e.averageAttenuationDb]).sort()).toEqual([['02:00:00:00:c0:11', 28], ['02:00:00:00:c0:12', 14]]);
    expect(modem.keys.map((k) => k.nmk)).toEqual(['22'.repeat(16)]);
    expect(bridge.framingErrors).toBe(0);
    expect(link.stats.errors).toBe(0);
  });
});
