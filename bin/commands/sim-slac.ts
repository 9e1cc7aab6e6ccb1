import { Option, type Command } from 'commander';
import { AfPacketLink } from '../../hal/plc/af-packet.ts';
import { ModemSim } from '../../sim/modem/modem-sim.ts';
import { EvseSlacSim, type EvseFault } from '../../sim/evse-slac/evse-slac-sim.ts';
import { EvccError } from '../../core/errors.ts';
import { createRuntime, type GlobalOptions } from '../runtime.ts';

/**
 * `evcc sim modem` and `evcc sim evse-slac`: the SLAC simulators as standalone processes on a netdev, so that
 * independent peers (Debian's `evse`/`pev`) and our EV can run against them over real raw sockets.
 *
 * Where a modem lives on a veth pair: a frame reaches a host's raw socket only when it arrives from the peer end,
 * so each host's "local modem" runs on the opposite end of the veth — the EV's modem next to the charger, the
 * charger's modem next to the EV (with --see-outgoing, so it notices the sounds the EV sends there).
 */
function simCommand(program: Command): Command {
  // `sim` may be shared with other simulators' modules: reuse it when one already registered it.
  return program.commands.find((c) => c.name() === 'sim') ?? program.command('sim').description('simulators (bench without hardware)');
}

async function untilSignal(): Promise<void> {
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

export function registerSimSlac(program: Command, globals: () => GlobalOptions): void {
  const sim = simCommand(program);
  sim
    .command('modem')
    .description('QCA7000 modem simulator: answers CM_SET_KEY; charger side emits CM_ATTEN_PROFILE.IND per sound')
    .requiredOption('-i, --iface <name>', 'network interface')
    .addOption(new Option('--side <side>', 'which host it serves').choices(['ev', 'evse']).makeOptionMandatory())
    .option('--host <mac>', 'MAC of the host it serves (default: learned from the first CM_SET_KEY.REQ)')
    .option('--modem-mac <mac>', 'the modem\'s own MAC')
    .addOption(new Option('--attenuation <dB>', 'attenuation per group reported for each sound').argParser(Number).default(20))
    .addOption(new Option('--set-key-result <n>', 'CM_SET_KEY.CNF Result (QCA: 1)').argParser(Number).default(1))
    .option('--ignore-set-key', 'never confirm CM_SET_KEY (fault)')
    .option('--see-outgoing', 'also see frames other sockets send on this interface (charger modem next to the EV)')
    .addOption(new Option('--join-delay <ms>', 'join the AVLN this long after CM_SET_KEY (default 0: at once)').argParser(Number).default(0))
    .option('--never-join', 'never join the AVLN after CM_SET_KEY (fault)')
    .option('--no-host-action-ind', 'send no VS_HST_ACTION.IND (firmware that only answers VS_NW_INFO)')
    .option('--no-nw-info', 'do not answer VS_NW_INFO.REQ (firmware that only indicates)')
    .action(async (o: { iface: string; side: 'ev' | 'evse'; host?: string; modemMac?: string; attenuation: number; setKeyResult: number; ignoreSetKey?: boolean; seeOutgoing?: boolean; joinDelay: number; neverJoin?: boolean; hostActionInd: boolean; nwInfo: boolean }) => {
      if (!(Number.isInteger(o.joinDelay) && o.joinDelay >= 0)) throw new EvccError('CONFIG_INVALID', '--join-delay must be a non-negative integer (ms)');
      const rt = await createRuntime(globals());
      const log = rt.log('SIM');
      const link = await AfPacketLink.open(o.iface, { seeOutgoing: !!o.seeOutgoing });
      const modem = new ModemSim(link, {
        side: o.side, attenuationDb: o.attenuation, setKeyResult: o.setKeyResult, ignoreSetKey: !!o.ignoreSetKey, log, clock: rt.clock,
        joinDelayMs: o.joinDelay, neverJoin: !!o.neverJoin, noHostActionInd: !o.hostActionInd, noNwInfo: !o.nwInfo,
        ...(o.host ? { hostMac: o.host } : {}), ...(o.modemMac ? { modemMac: o.modemMac } : {}),
      });
      log.info({ iface: o.iface, side: o.side, host: o.host ?? 'learn' }, 'modem simulator ready');
      await untilSignal();
      log.info({ keys: modem.keys.length, profiles: modem.profilesSent, hostActionsSent: modem.hostActionsSent, hostActionRsps: modem.hostActionRsps, nwInfoAnswered: modem.nwInfoAnswered }, 'modem simulator stopped');
      await modem.close();
      await link.close();
      await rt.close();
    });
  sim
    .command('evse-slac')
    .description('charger-side SLAC simulator (needs a modem simulator, side evse, for the attenuation profiles)')
    .requiredOption('-i, --iface <name>', 'network interface')
    .option('--nid <hex>', 'NID (7 bytes hex)')
    .option('--nmk <hex>', 'NMK (16 bytes hex)')
    .option('--evse-id <text>', 'EVSE id (17 bytes max)')
    .option('--fault <name...>', 'declared faults: noParmCnf noAttenCharInd noMatchCnf foreignRunId garbage')
    .action(async (o: { iface: string; nid?: string; nmk?: string; evseId?: string; fault?: string[] }) => {
      const rt = await createRuntime(globals());
      const log = rt.log('SIM');
      const link = await AfPacketLink.open(o.iface);
      const evse = new EvseSlacSim(link, rt.clock, {
        log, faults: (o.fault ?? []) as EvseFault[],
        ...(o.nid ? { nid: o.nid } : {}), ...(o.nmk ? { nmk: o.nmk } : {}), ...(o.evseId ? { evseId: o.evseId } : {}),
      });
      log.info({ iface: o.iface, mac: evse.mac }, 'charger SLAC simulator ready');
      await untilSignal();
      await evse.close();
      await link.close();
      await rt.close();
    });
}
