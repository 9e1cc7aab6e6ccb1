import { execa } from 'execa';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { RebootHook } from '../rauc/types.ts';
import type { FileStore } from '../store/types.ts';

/** In the run dir (/run/evcc): `evcc-reboot.path` (PathExists=) starts the root oneshot `evcc-reboot.service`. */
export const REBOOT_REQUEST_FILE = 'reboot-request';

/**
 * The device's reboot without any privilege in the runtime (default): the request is a file in the run dir; the
 * path unit `evcc-reboot.path` sees it and starts `evcc-reboot.service` (root, `systemctl reboot`), which stops
 * evcc.service orderly first. User evcc needs no polkit rule and no capability; the request names its reason, which
 * the reboot unit logs. /run is a tmpfs: the request is gone after the reboot.
 */
export class RequestFileReboot implements RebootHook {
  constructor(private readonly run: FileStore, private readonly log?: Logger) {}

  async reboot(reason: string): Promise<void> {
    this.log?.warn({ cp: 'SYSTEM-REBOOT', via: REBOOT_REQUEST_FILE, reason }, `rebooting (request to evcc-reboot.path): ${reason}`);
    try {
      await this.run.writeAtomic(REBOOT_REQUEST_FILE, `${JSON.stringify({ reason, requestedAt: new Date().toISOString() })}\n`, { mode: 0o600 });
    } catch (err) {
      throw new EvccError('SYSTEM_REBOOT_FAILED', `reboot request not written to ${REBOOT_REQUEST_FILE} in the run dir: ${(err as Error).message}`, {}, { cause: err });
    }
  }
}

/**
 * The device's reboot through a configured command (update.rebootCommand), on the Pi `systemctl reboot`, which
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
