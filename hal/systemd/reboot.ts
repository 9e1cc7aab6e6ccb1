import { execa } from 'execa';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { RebootHook } from '../rauc/types.ts';

/**
 * The device's reboot (the update's reboot hook): runs the configured command, on the Pi `systemctl reboot`, which
 * stops evcc.service orderly (SIGTERM: OEM link offline, TPM released) before the machine goes down. Resolves once
 * the command returned 0 (systemd queued the job); SYSTEM_REBOOT_FAILED when it cannot run or fails, so the update
 * agent asks again at its next pass (the update record stays `rebooting`).
 */
export class CommandReboot implements RebootHook {
  constructor(private readonly command: readonly string[], private readonly log?: Logger) {
    if (command.length === 0) throw new EvccError('CONFIG_INVALID', 'update.rebootCommand is empty');
  }

  async reboot(reason: string): Promise<void> {
    const [file, ...args] = this.command as [string, ...string[]];
    this.log?.warn({ cp: 'SYSTEM-REBOOT', command: this.command, reason }, `rebooting: ${reason}`);
    const r = await execa(file, args, { reject: false, timeout: 60_000, stdin: 'ignore' });
    if (r.failed) {
      const why = r.exitCode !== undefined ? `exit ${r.exitCode}: ${(r.stderr || r.stdout).trim().slice(0, 300)}` : (r.shortMessage ?? 'did not run');
      throw new EvccError('SYSTEM_REBOOT_FAILED', `reboot command ${this.command.join(' ')} failed (${why})`, { command: [...this.command], exitCode: r.exitCode });
    }
  }
}
