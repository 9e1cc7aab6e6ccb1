import { isEvccError } from '../core/errors.ts';
import { oneLine } from '../firmware/dashboard/failure-words.ts';

/**
 * How `evcc` reports a failure on stderr: one line `evcc: CODE: message`, exit 1, for every typed failure;
 * `evcc: INTERNAL: message`, exit 70, for anything else (a bug: every expected failure is typed). Stacks and the
 * cause chain only with `--debug` / EVCC_DEBUG=1. The same one-line form heads the dashboard's failure banner
 * (firmware/dashboard/failure-words.ts), under a headline in bench words.
 */
export interface FailureReport {
  text: string;
  exitCode: 1 | 70;
}

/** The cause chain with stacks, for --debug. */
function debugDetail(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && depth < 8; depth++) {
    const body = e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e);
    parts.push(depth === 0 ? body : `caused by: ${body}`);
    e = e instanceof Error ? e.cause : undefined;
  }
  return `${parts.join('\n')}\n`;
}

export function describeFailure(err: unknown, debug: boolean): FailureReport {
  let text: string;
  let exitCode: 1 | 70;
  if (isEvccError(err)) {
    text = `evcc: ${err.code}: ${oneLine(err.message)}\n`;
    exitCode = 1;
  } else {
    const message = oneLine(err instanceof Error ? err.message : String(err));
    text = `evcc: INTERNAL: ${message || (err instanceof Error ? err.name : 'error')}\n`;
    exitCode = 70;
  }
  return { text: debug ? text + debugDetail(err) : text, exitCode };
}

export const debugFromEnv = (env: NodeJS.ProcessEnv = process.env): boolean => /^(1|true|yes)$/i.test(env.EVCC_DEBUG ?? '');
