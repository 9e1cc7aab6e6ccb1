import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { Aedes, type Client } from 'aedes';
import { EvccError } from '../../core/errors.ts';
import { OTA_TOPIC_PREFIX, VEHICLE_ID_PATTERN } from '../../firmware/ota/constants.ts';
import type { Logger } from '../../core/logger.ts';
import { PacketSizeLimitedStream } from '../../hal/mqtt/packet-size.ts';
import { parseSharedFilter } from '../../hal/mqtt/types.ts';

/**
 * An in-process MQTT broker (aedes, MQTT 3.1.1 only — PLATFORM.md) for the embedded bench session, where no Debian
 * mosquitto runs. It enforces the same per-vehicle ACL as the mosquitto config: a vehicle reads and writes only
 * `evcc/v1/<its id>/…`; the OEM backend identity may use every vehicle's topics.
 *
 * Identity: with `tls`, the CN of the verified client certificate (mutual TLS, like mosquitto's
 * `use_identity_as_username`). Without TLS (loopback bench only) the client id names the identity:
 * `evcc-<vehicle id>` or `oem-backend…` — that is NOT authentication, so the plain listener binds 127.0.0.1 only.
 */
export const BACKEND_IDENTITY = 'oem-backend';

/**
 * Size cap of the OEM link broker, the same for mosquitto (`max_packet_size` in mosquitto.conf and
 * test/support/mosquitto.ts) and aedes (which has no such option: PacketSizeLimitedStream). A client that sends a
 * larger packet is disconnected at the packet's fixed header, before its payload is read. The largest legitimate
 * message is a root-list answer (OTA_MAX_ROOT_LIST_BYTES, 64 KiB); twice that leaves room for the approval
 * statements and the topic, and keeps a hostile client from making the broker buffer megabytes.
 */
export const BROKER_MAX_PAYLOAD_BYTES = 128 * 1024;
export const BROKER_MAX_PACKET_BYTES = BROKER_MAX_PAYLOAD_BYTES + 4 * 1024;

export type EmbeddedBrokerErrorCode = 'OEM_BROKER_LISTEN_FAILED';

export interface EmbeddedBrokerOptions {
  /** 0 (default) = a free port. */
  port?: number;
  host?: string;
  tls?: { ca: string; cert: string; key: string };
  log?: Logger;
}

export interface EmbeddedBroker {
  readonly url: string;
  readonly port: number;
  readonly broker: Aedes;
  /** ACL denials so far (for tests and the bench log). */
  readonly denials: { identity: string; action: 'publish' | 'subscribe'; topic: string }[];
  close(): Promise<void>;
}

function identityOf(client: Client, tls: boolean): string | undefined {
  if (tls) {
    const conn = client.conn as unknown as PacketSizeLimitedStream | TLSSocket;
    const socket = (conn instanceof PacketSizeLimitedStream ? conn.socket : conn) as TLSSocket;
    const cert = socket.getPeerCertificate?.();
    const cn = cert?.subject?.CN;
    return typeof cn === 'string' ? cn : Array.isArray(cn) ? cn[0] : undefined;
  }
  if (client.id.startsWith(BACKEND_IDENTITY)) return BACKEND_IDENTITY;
  return client.id.startsWith('evcc-') ? client.id.slice(5) : undefined;
}

/** The ACL: backend everywhere under evcc/v1/, a vehicle only under its own prefix (no wildcard above it). */
export function aclAllows(identity: string | undefined, topicOrFilter: string): boolean {
  if (!identity) return false;
  if (identity === BACKEND_IDENTITY) return topicOrFilter.startsWith(`${OTA_TOPIC_PREFIX}/`);
  if (!VEHICLE_ID_PATTERN.test(identity)) return false;
  return topicOrFilter.startsWith(`${OTA_TOPIC_PREFIX}/${identity}/`);
}

export async function startEmbeddedBroker(options: EmbeddedBrokerOptions = {}): Promise<EmbeddedBroker> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new EvccError('CONFIG_INVALID', `broker port must be an integer 0…65535, got ${String(options.port)}`, { port: options.port });
  }
  const useTls = options.tls !== undefined;
  const denials: EmbeddedBroker['denials'] = [];
  const deny = (identity: string | undefined, action: 'publish' | 'subscribe', topic: string) => {
    denials.push({ identity: identity ?? '(none)', action, topic });
    options.log?.warn({ identity, action, topic }, 'broker ACL denied');
  };
  const broker = await Aedes.createBroker({
    authenticate: (client, _u, _p, done) => {
      const id = identityOf(client, useTls);
      if (id) return done(null, true);
      const err = Object.assign(new Error('no identity'), { returnCode: 5 as const });
      done(err as never, false);
    },
    authorizePublish: (client, packet, done) => {
      // Will messages and internal publishes arrive with the client too; the same rule applies.
      const id = client ? identityOf(client, useTls) : BACKEND_IDENTITY;
      if (aclAllows(id, packet.topic)) return done(null);
      deny(id, 'publish', packet.topic);
      done(new Error('not authorized'));
    },
    authorizeSubscribe: (client, sub, done) => {
      const id = identityOf(client, useTls);
      // aedes has no shared subscriptions: `$share/<group>/<filter>` becomes the plain filter, right for the one
      // backend instance a bench broker serves (several would each answer every request: duplicates, not losses).
      const share = parseSharedFilter(sub.topic);
      if (share) sub = { ...sub, topic: share.filter };
      if (aclAllows(id, sub.topic)) return done(null, sub);
      deny(id, 'subscribe', sub.topic);
      // A null subscription is a negative grant (SUBACK 0x80) and keeps the client connected, as mosquitto does.
      done(null, null);
    },
  });
  // TCP_NODELAY: request/answer packets are small; Nagle + delayed ACK would add ~40 ms per hop (measured).
  const handle = (s: Socket): void => {
    s.setNoDelay(true);
    broker.handle(new PacketSizeLimitedStream(s, BROKER_MAX_PACKET_BYTES) as never);
  };
  const server: Server = useTls
    ? createTlsServer({ ...options.tls!, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' }, handle)
    : createNetServer({ noDelay: true }, handle);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    // Close what was started, or its timers keep the process alive after the failure.
    await new Promise<void>((r) => broker.close(() => r()));
    server.close();
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new EvccError<EmbeddedBrokerErrorCode>('OEM_BROKER_LISTEN_FAILED', `cannot listen on ${host}:${port} (${why})`, { host, port, why }, { cause: err });
  }
  server.on('error', (err) => options.log?.error({ error: err.message }, 'broker listener error'));
  const bound = (server.address() as { port: number }).port;
  return {
    url: `${useTls ? 'mqtts' : 'mqtt'}://${host}:${bound}`,
    port: bound,
    broker,
    denials,
    async close() {
      await new Promise<void>((r) => broker.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
