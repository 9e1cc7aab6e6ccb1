import type { Logger } from '../../core/logger.ts';
import type { Clock } from '../../hal/clock/types.ts';
import type { SimSegment } from '../../hal/plc/sim.ts';
import { ModemSim, type ModemSimOptions } from '../modem/modem-sim.ts';
import { EvseSlacSim, type EvseSlacSimOptions } from './evse-slac-sim.ts';

export { EvseSlacSim, type EvseFault, type EvseSlacSimOptions } from './evse-slac-sim.ts';
export { ModemSim, type ModemSimOptions } from '../modem/modem-sim.ts';

/**
 * In-memory SLAC peers on a SimSegment (no root, no netdev): what the embedded bench session and the unit tests
 * run. A "charger" is its SLAC host (EvseSlacSim) plus its QCA7000 modem (ModemSim, side evse) that turns the
 * PEV's sounds into CM_ATTEN_PROFILE.IND with the charger's attenuation.
 */
export interface SimChargerOptions extends EvseSlacSimOptions {
  /** MAC of the charger's SLAC host. */
  evseMac: string;
  /** MAC of its modem (default derived from evseMac). */
  modemMac?: string;
  /** Average attenuation (dB) the charger measures for the PEV's sounds. */
  attenuationDb?: number | number[];
  clock: Clock;
  log?: Logger;
}

export interface SimCharger {
  evseMac: string;
  nid: Uint8Array;
  nmk: Uint8Array;
  evse: EvseSlacSim;
  modem: ModemSim;
  close(): Promise<void>;
}

function derivedModemMac(hostMac: string, tag: number): string {
  const last = hostMac.split(':').slice(3).join(':');
  return `00:b0:${tag.toString(16).padStart(2, '0')}:${last}`;
}

export function startSimCharger(segment: SimSegment, options: SimChargerOptions): SimCharger {
  const host = segment.attach(options.evseMac, `evse ${options.evseMac}`);
  const modemMac = options.modemMac ?? derivedModemMac(options.evseMac, 0x52);
  const modemStation = segment.attach(modemMac, `evse modem ${modemMac}`);
  modemStation.promiscuous = true;
  const modemOptions: ModemSimOptions = { side: 'evse', modemMac, hostMac: options.evseMac };
  if (options.attenuationDb !== undefined) modemOptions.attenuationDb = options.attenuationDb;
  if (options.log) modemOptions.log = options.log;
  const modem = new ModemSim(modemStation, modemOptions);
  const evse = new EvseSlacSim(host, options.clock, options);
  return {
    evseMac: options.evseMac,
    nid: evse.nid,
    nmk: evse.nmk,
    evse,
    modem,
    async close() {
      await evse.close();
      await modem.close();
      await host.close();
      await modemStation.close();
    },
  };
}

/** The EV's own QCA7000 (answers its host's CM_SET_KEY.REQ). */
export function startSimEvModem(segment: SimSegment, options: Omit<ModemSimOptions, 'side'> & { hostMac: string }): ModemSim & { station: { close(): Promise<void> } } {
  const modemMac = options.modemMac ?? derivedModemMac(options.hostMac, 0x53);
  const station = segment.attach(modemMac, `ev modem ${modemMac}`);
  station.promiscuous = true;
  const modem = new ModemSim(station, { ...options, side: 'ev', modemMac }) as ModemSim & { station: { close(): Promise<void> } };
  const close = modem.close.bind(modem);
  modem.station = station;
  modem.close = async () => {
    await close();
    await station.close();
  };
  return modem;
}
