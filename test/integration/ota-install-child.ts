/**
 * Child process of the kill-during-install test: opens the vehicle's certificate store and installs the given V2G
 * roots one after the other through the OTA install step (rootStoreOf(store).install — what connectWithRootFetch's
 * InstallRoot state calls), printing `INSTALLED <i>` after each install has resolved (i.e. is durable).
 * Usage: tsx ota-install-child.ts DATA_DIR STORE_KEY_HEX ROOTS_JSON
 */
import 'reflect-metadata';
import { readFile } from 'node:fs/promises';
import { writeSync } from 'node:fs';
import { rootStoreOf } from '../../firmware/ota/pki-adapter.ts';
import { CertificateStore, HmacIntegrity } from '../../firmware/pki/store.ts';
import { FsStore } from '../../hal/store/fs-store.ts';

const [dataDir, keyHex, rootsJson] = process.argv.slice(2);
const roots = (JSON.parse(await readFile(rootsJson!, 'utf8')) as string[]).map((b) => new Uint8Array(Buffer.from(b, 'base64')));
const store = await CertificateStore.open(await FsStore.open(dataDir!), { integrity: new HmacIntegrity(new Uint8Array(Buffer.from(keyHex!, 'hex'))), maxRoots: 64 });
const port = rootStoreOf(store);
writeSync(1, 'READY\n');
for (let i = 0; i < roots.length; i++) {
  await port.install(roots[i]!, { source: `ota:kill-test-${i}` });
  writeSync(1, `INSTALLED ${i}\n`);
}
writeSync(1, 'DONE\n');
