/**
 * Child process of the record-lock test: one "backend instance" doing read-increment-write cycles on one record of a
 * shared store, each under the record's cross-process lock (or, with `nolock`, bare: the control that shows the test
 * can see lost updates). Prints READY, starts when a line arrives on stdin (all children at once), prints DONE.
 * Usage: tsx oem-record-lock-child.ts STORE_DIR CYCLES lock|nolock
 */
import { writeSync } from 'node:fs';
import { once } from 'node:events';
import { RecordLocks } from '../../deploy/oem-backend/record-lock.ts';
import { FsStore } from '../../hal/store/fs-store.ts';

const [dir, cycles, mode] = process.argv.slice(2);
const store = await FsStore.open(dir!);
const locks = new RecordLocks(dir!);
const cycle = async () => {
  const raw = await store.read('counter.json');
  const n = raw ? (JSON.parse(Buffer.from(raw).toString('utf8')) as { n: number }).n : 0;
  await store.writeAtomic('counter.json', JSON.stringify({ n: n + 1 }));
};
writeSync(1, 'READY\n');
await once(process.stdin, 'data');
for (let i = 0; i < Number(cycles); i++) await (mode === 'lock' ? locks.run('job:counter', cycle) : cycle());
writeSync(1, 'DONE\n');
process.exit(0);
