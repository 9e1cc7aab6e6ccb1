import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP tap between tpm2-tools and swtpm: what a probe on the SPI bus between the SoC and the TPM HAT would see.
 * The swtpm TCTI opens a new connection per TPM command on `port` and uses `port + 1` as its control channel, so
 * the tap listens on an adjacent free pair, forwards both, and records every command and response byte of the
 * data channel.
 */
export class TpmBusTap {
  private chunks: Buffer[] = [];
  private readonly sockets = new Set<Socket>();
  private constructor(private readonly servers: Server[], readonly port: number) {}

  get tcti(): string {
    return `swtpm:host=127.0.0.1,port=${this.port}`;
  }
  /** Everything that crossed the data channel since the last `clear()`, both directions. */
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
  clear(): void {
    this.chunks = [];
  }

  static async start(tpmPort: number, ctrlPort: number): Promise<TpmBusTap> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const data = createServer();
      const port = await new Promise<number>((resolve, reject) => {
        data.once('error', reject);
        data.listen(0, '127.0.0.1', () => resolve((data.address() as { port: number }).port));
      });
      const ctrl = createServer();
      const ok = await new Promise<boolean>((resolve) => {
        ctrl.once('error', () => resolve(false));
        ctrl.listen(port + 1, '127.0.0.1', () => resolve(true));
      });
      if (!ok) {
        await new Promise((r) => data.close(r));
        continue;
      }
      const tap = new TpmBusTap([data, ctrl], port);
      data.on('connection', (s) => tap.forward(s, tpmPort, true));
      ctrl.on('connection', (s) => tap.forward(s, ctrlPort, false));
      return tap;
    }
    throw new Error('no adjacent free port pair for the TPM bus tap');
  }

  private forward(client: Socket, port: number, record: boolean): void {
    const upstream = connect({ port, host: '127.0.0.1' });
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.on('data', (d: Buffer) => {
      if (record) this.chunks.push(Buffer.from(d));
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (record) this.chunks.push(Buffer.from(d));
      client.write(d);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((srv) => new Promise((r) => srv.close(r))));
  }
}
