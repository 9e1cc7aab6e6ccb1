// do_evcc_build: removes from the current directory (the recipe's ${S}) every file that `npm pack` would not ship,
// given its `npm pack --dry-run --json` output. node_modules (the fetched dependencies) stays, and so do the files
// the recipe itself reads from ${S} afterwards: npm-shrinkwrap.json (npm.bbclass do_configure; npm pack leaves it
// out of a package with "files") and LICENSE (LIC_FILES_CHKSUM).
import { readdirSync, readFileSync, rmSync, rmdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const [packlist] = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const keep = new Set([...packlist.files.map((f) => f.path), 'npm-shrinkwrap.json', 'LICENSE']);
let removed = 0;
function prune(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = relative('.', join(dir, entry.name));
    if (path === 'node_modules') continue;
    if (entry.isDirectory()) {
      prune(path);
      if (readdirSync(path).length === 0) rmdirSync(path);
    } else if (!keep.has(path)) {
      rmSync(path);
      removed++;
    }
  }
}
prune('.');
console.log(`evcc-prune-to-packlist: kept ${keep.size} files of the package, removed ${removed}`);
