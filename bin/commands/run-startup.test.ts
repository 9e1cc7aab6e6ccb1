import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Issue #12 "load modules lazily where start-up shows it": what `evcc run` loads before READY (waiting for plug-in)
 * is its static import graph. The session side (engines, EXI codecs), the OEM link (mqtt.js), the TPM tool driver
 * (execa), the PLC drivers and the dashboard load on use (bench/startup.bench.ts measures the effect). This walks the
 * graph from the source — `import type` and dynamic `import()` are not edges — so a new static import that pulls
 * one of them back into the cold start fails here.
 */
const repo = resolve(import.meta.dirname, '../..');
const STATIC_IMPORT = /^\s*(?:import|export)\s+(?!type\b)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm;

function staticGraph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const todo = [resolve(repo, entry)];
  while (todo.length) {
    const file = todo.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const m of readFileSync(file, 'utf8').matchAll(STATIC_IMPORT)) {
      const spec = m[1]!;
      if (spec.startsWith('.')) todo.push(resolve(dirname(file), spec));
      else if (!spec.startsWith('node:')) packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
    }
  }
  return { files: new Set([...files].map((f) => f.slice(repo.length + 1))), packages };
}

describe('evcc run cold start (static import graph of bin/commands/run.ts)', () => {
  const g = staticGraph('bin/commands/run.ts');

  it('holds the service start-up: runtime, config, key service, certificate store, pilot board, systemd notify', () => {
    for (const f of ['bin/runtime.ts', 'firmware/vehicle/config.ts', 'firmware/vehicle/trust.ts', 'firmware/pki/store.ts', 'hal/pilot/serial-board.ts', 'hal/systemd/notify.ts']) expect(g.files).toContain(f);
  });

  it('does not hold the session side, the OEM link client, the TPM tool driver, the PLC drivers or the dashboard', () => {
    const late = [...g.files].filter((f) => /^(firmware\/(exi|session)\/|firmware\/vehicle\/(stages|session-modules)\.ts|firmware\/evcc\.ts|firmware\/ota\/(link|root-fetch)\.ts|hal\/(mqtt|tpm)\/|hal\/plc\/(af-packet|qca-uart)\.ts|deploy\/dashboard\/|bin\/(dashboard|session-capture)\.ts)/.test(f));
    expect(late).toEqual([]);
    for (const p of ['mqtt', 'execa', 'ws', 'aedes']) expect(g.packages).not.toContain(p);
  });

  it('the walker sees what it claims to: from the stage binding, the session engines and EXI are reachable', () => {
    const s = staticGraph('firmware/vehicle/stages.ts');
    expect([...s.files].some((f) => f.startsWith('firmware/exi/'))).toBe(true);
    expect([...s.files].some((f) => f.startsWith('firmware/session/'))).toBe(true);
  });
});
