import { createServer as createNetServer, type Server } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { Aedes, type Client } from 'aedes';
import { OTA_TOPIC_PREFIX, VEHICLE_ID_PATTERN } from '../../firmware/ota/constants.ts';
import type { Logger } from '../../core/logger.ts';

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
    const cert = (client.conn as TLSSocket).getPeerCertificate?.();
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
      if (aclAllows(id, sub.topic)) return done(null, sub);
      deny(id, 'subscribe', sub.topic);
      // A null subscription is a negative grant (SUBACK 0x80) and keeps the client connected, as mosquitto does.
      done(null, null);
    },
  });
  const host = options.host ?? '127.0.0.1';
  // TCP_NODELAY: request/answer packets are small; Nagle + delayed ACK would add ~40 ms per hop (measured).
  const server: Server = useTls
    ? createTlsServer({ ...options.tls!, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' }, (s) => {
        s.setNoDelay(true);
        broker.handle(s);
      })
    : createNetServer({ noDelay: true }, (s) => broker.handle(s));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `${useTls ? 'mqtts' : 'mqtt'}://${host}:${port}`,
    port,
    broker,
    denials,
    async close() {
      await new Promise<void>((r) => broker.close(() => r()));
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
