/**
 * Child process of the Fig. 11 → 12 test: the charger simulator (sim/secc, TLS 1.2, ISO 15118-2 profile) on
 * PKI-B, run inside the SECC's network namespace. Usage: tsx ota-secc-runner.ts IFACE ADDRESS CHAIN.pem KEY.pem
 * Prints `READY <port>` once listening; exits on SIGTERM.
 */
import 'reflect-metadata';
import { readFile } from 'node:fs/promises';
import { NodeUdp6 } from '../../hal/net/udp6.ts';
import { startSimSecc } from '../../sim/secc/secc.ts';

const [iface, address, chainFile, keyFile] = process.argv.slice(2);
const secc = await startSimSecc({
  udp: new NodeUdp6(), iface: iface!, address: address!, transport: 'tls12', sdp: 'off', listenHost: '::',
  certChainPem: await readFile(chainFile!, 'utf8'), keyPem: await readFile(keyFile!, 'utf8'),
});
secc.events.on('tls-error', (m: string) => process.stdout.write(`TLS-ERROR ${m}\n`));
process.stdout.write(`READY ${secc.port}\n`);
process.once('SIGTERM', () => void secc.close().then(() => process.exit(0)));
