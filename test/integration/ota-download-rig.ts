import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BundleServer } from '../../deploy/oem-backend/bundle-server.ts';
import { createLinkCa, issueLinkCert, type LinkCa } from '../../deploy/oem-backend/link-pki.ts';
import { silentLogger, type Logger } from '../../core/logger.ts';

/**
 * The bundle side of the OTA download tests: the OEM backend's real HTTPS bundle server (its TLS identity issued by
 * the link CA for 127.0.0.1), serving a directory, and a TCP relay in front of it that can cut a connection after a
 * given number of bytes from the server (a broken mobile link mid-transfer; TLS passes through untouched).
 */
export interface BundleHost {
  ca: LinkCa;
  dir: string;
  server: BundleServer;
  /** Port of the server itself. */
  port: number;
  /** Port of the relay. */
  relayPort: number;
  /** URL of a bundle through the relay. */
  url(name: string): string;
  /** The next `n` connections through the relay are cut after `bytes` server bytes each. */
  cutNext(bytes: number, n?: number): void;
  /** Connections the relay carried, and how many it cut. */
  relayStats: { connections: number; cut: number };
  close(): Promise<void>;
}

export async function bundleHost(log: Logger = silentLogger()): Promise<BundleHost> {
  const ca = await createLinkCa('evcc test OEM link CA');
  const id = await issueLinkCert(ca, { commonName: 'oem-backend', server: { ips: ['127.0.0.1'], dns: ['localhost'] } });
  const dir = await mkdtemp(join(tmpdir(), 'evcc-bundles-'));
  const server = new BundleServer({ dir, cert: id.certPem, key: id.keyPem, log });
  const port = await server.start();
  const cuts: number[] = [];
  const relayStats = { connections: 0, cut: 0 };
  const sockets = new Set<Socket>();
  const relay: Server = createServer((client) => {
    relayStats.connections++;
    const cutAfter = cuts.shift();
    const upstream = createConnection({ host: '127.0.0.1', port });
    sockets.add(client);
    sockets.add(upstream);
    let seen = 0;
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      if (cutAfter !== undefined && seen + chunk.length >= cutAfter) {
        client.write(chunk.subarray(0, Math.max(0, cutAfter - seen)));
        relayStats.cut++;
        client.destroy();
        upstream.destroy();
        return;
      }
      seen += chunk.length;
      client.write(chunk);
    });
    upstream.on('end', () => client.end());
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', () => resolve()));
  const relayPort = (relay.address() as AddressInfo).port;
  return {
    ca, dir, server, port, relayPort, relayStats,
    url: (name) => `https://127.0.0.1:${relayPort}/bundles/${name}`,
    cutNext: (bytes, n = 1) => {
      for (let i = 0; i < n; i++) cuts.push(bytes);
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => relay.close(() => resolve()));
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
