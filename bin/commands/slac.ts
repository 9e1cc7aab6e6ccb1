import { Option, type Command } from 'commander';
import { runSlac } from '../../firmware/slac/driver.ts';
import { toHex } from '../../firmware/slac/codec.ts';
import { EvccError } from '../../core/errors.ts';
import { AfPacketLink } from '../../hal/plc/af-packet.ts';
import { QcaUartLink } from '../../hal/plc/qca-uart.ts';
import type { PlcLink } from '../../hal/plc/types.ts';
import { createRuntime, type GlobalOptions } from '../runtime.ts';

/**
 * `evcc slac --iface IF` (or `--uart DEV --mac MAC`): SLAC alone (EV side) on a real link, every step in the bench log.
 * Composition root: SystemClock + AfPacketLink | QcaUartLink + the `slac` config section (flags override it).
 */
export function registerSlac(program: Command, globals: () => GlobalOptions): void {
  program
    .command('slac')
    .description('run ISO 15118-3 SLAC (EV side) on a PLC modem interface and report the match')
    .option('-i, --iface <name>', 'network interface of the PLC modem (AF_PACKET, needs CAP_NET_RAW)')
    .option('--uart <path>', 'QCA7000 wired by UART instead (serial framing); needs --mac')
    .option('--mac <mac>', 'host MAC on the PLC segment (UART only)')
    .addOption(new Option('--baud <rate>', 'UART baud rate').argParser(Number).default(115200))
    .addOption(new Option('--parm-retries <n>', 'CM_SLAC_PARM.REQ retries (default C_EV_match_retry = 2)').argParser(Number))
    .addOption(new Option('--interval <ms>', 'TP_EV_batch_msg_interval in ms (default 40)').argParser(Number))
    .addOption(new Option('--threshold <dB>', 'highest acceptable average attenuation').argParser(Number))
    .addOption(new Option('--start-atten-char-inds <n>', 'CM_START_ATTEN_CHAR.IND count (default C_EV_start_atten_char_inds = 3)').argParser(Number))
    .option('--json', 'print the result as one JSON line on stdout (keys included: bench use only)')
    .action(async (opts: { iface?: string; uart?: string; mac?: string; baud: number; parmRetries?: number; interval?: number; threshold?: number; startAttenCharInds?: number; json?: boolean }) => {
      for (const [flag, v] of [['--baud', opts.baud], ['--parm-retries', opts.parmRetries], ['--interval', opts.interval], ['--start-atten-char-inds', opts.startAttenCharInds]] as const) {
        if (v !== undefined && !(Number.isInteger(v) && v >= 0)) throw new EvccError('CONFIG_INVALID', `${flag} must be a non-negative integer`);
      }
      if (opts.threshold !== undefined && !Number.isFinite(opts.threshold)) throw new EvccError('CONFIG_INVALID', '--threshold must be a number (dB)');
      if (!opts.iface === !opts.uart) throw new EvccError('CONFIG_INVALID', 'give exactly one of --iface or --uart');
      if (opts.uart && !opts.mac) throw new EvccError('CONFIG_INVALID', '--uart needs --mac (the host MAC on the PLC segment)');
      const rt = await createRuntime(globals());
      const log = rt.log('SLAC');
      const raw = { ...((rt.rawConfig.slac as Record<string, unknown> | undefined) ?? {}) };
      if (opts.parmRetries !== undefined) raw.parmReqRetries = opts.parmRetries;
      if (opts.interval !== undefined) raw.batchMsgIntervalMs = opts.interval;
      if (opts.threshold !== undefined) raw.maxAverageAttenuationDb = opts.threshold;
      if (opts.startAttenCharInds !== undefined) raw.startAttenCharInds = opts.startAttenCharInds;
      let link: PlcLink;
      try {
        link = opts.iface
          ? await AfPacketLink.open(opts.iface)
          : await QcaUartLink.open({ path: opts.uart!, mac: opts.mac!, baudRate: opts.baud });
      } catch (err) {
        await rt.close();
        throw err;
      }
      const ac = new AbortController();
      const stop = () => ac.abort(new Error('interrupted'));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        const result = await runSlac({ link, clock: rt.clock, log, settings: raw, signal: ac.signal });
        for (const e of result.evses) {
          log.info({ evse: e.mac, averageAttenuationDb: e.averageAttenuationDb, chosen: e.chosen }, `EVSE ${e.mac}${e.chosen ? ' (matched)' : ''}`);
        }
        if (opts.json) {
          process.stdout.write(`${JSON.stringify({
            evseMac: result.evseMac, nid: toHex(result.nid), nmk: toHex(result.nmk), runId: toHex(result.runId),
            evses: result.evses, timings: result.timings, retries: result.retries, link: result.link,
          })}\n`);
        }
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        await link.close();
        await rt.close();
      }
    });
}
