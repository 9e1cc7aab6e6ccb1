/**
 * `evcc log verify FILE --key PUB` — checks a security log (firmware/log/security-log.ts) with the log key's public
 * part alone (the provisioning export's `security-log.pub.pem`): the hash chain of every entry and every checkpoint
 * signature. Prints what it proved (entries, signed through seq N, unsigned checkpoints of a degraded state, the
 * unsigned tail); names the first bad entry of an edited, truncated or reordered log (its seq and why) with a typed
 * error and exit status 1.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { EvccError } from '../../core/errors.ts';
import { verifySecurityLog } from '../../firmware/log/security-log.ts';
import type { GlobalOptions } from '../runtime.ts';

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new EvccError('IO_FAILED', `${what} ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { path }, { cause: err });
  }
}

export function registerLog(program: Command, _globals: () => GlobalOptions): void {
  const log = program.command('log').description('the signed security log: verify a log file with the log key\'s public part');

  log.command('verify')
    .description('check the hash chain and the checkpoint signatures of a security log; names the first bad entry (exit 1)')
    .argument('<file>', 'security log (JSON lines, evcc-security-log/1; on the vehicle: <data-dir>/log/security.jsonl)')
    .requiredOption('--key <pem>', 'the vehicle\'s security-log public key (provisioning export security-log.pub.pem)')
    .option('--json', 'the result as JSON')
    .action(async (file: string, o: { key: string; json?: boolean }) => {
      const [text, pem] = await Promise.all([readText(file, 'security log'), readText(o.key, 'log key')]);
      const r = verifySecurityLog(text, pem);
      if (o.json) {
        process.stdout.write(`${JSON.stringify({ ok: true, ...r })}\n`);
        return;
      }
      const degraded = r.unsignedCheckpoints.length
        ? `; ${r.unsignedCheckpoints.length} checkpoint(s) unsigned (${[...new Set(r.unsignedCheckpoints.map((c) => c.reason))].join(', ')}; first at seq ${r.unsignedCheckpoints[0]!.seq})`
        : '';
      const through = r.signedThrough >= 0 ? `signed through seq ${r.signedThrough}` : 'no signed checkpoint';
      process.stdout.write(`security log intact: ${r.entries} entries, ${r.signedCheckpoints} signed checkpoint(s), ${through}${degraded}; ${r.unsignedTail} entr${r.unsignedTail === 1 ? 'y' : 'ies'} after the last signature (chained only); head ${r.head}\n`);
    });
}
