// Builds the AF_PACKET addon at `npm install`/`npm ci` time from this machine's Node headers: no download.
// A machine without a compiler or headers still installs (the addon is loaded lazily; simulated links work),
// but says so loudly; the real-link tests then fail under CI instead of skipping.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const candidates = [process.env.npm_config_nodedir, join(dirname(process.execPath), '..')].filter(Boolean);
const nodedir = candidates.find((d) => existsSync(join(d, 'include', 'node', 'node_api.h')));
// npm bundles node-gyp: next to the running npm, or next to this node binary.
const gypScript = [
  process.env.npm_execpath && join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
].find((p) => p && existsSync(p));
const gyp = gypScript ? [process.execPath, gypScript] : ['node-gyp'];
if (!nodedir) {
  console.warn('hal/plc/native: no Node headers found (set npm_config_nodedir); AF_PACKET links unavailable');
  process.exit(0);
}
const r = spawnSync(gyp[0], [...gyp.slice(1), 'rebuild', `--nodedir=${nodedir}`], { cwd: here, stdio: 'inherit' });
if (r.status !== 0) {
  console.warn('hal/plc/native: build failed; AF_PACKET links unavailable (simulated links still work)');
}
