import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { EvccError } from '../../core/errors.ts';

/** SHA-256 of a file, streamed (bundles are tens of MB). */
export async function sha256File(path: string): Promise<Uint8Array> {
  const h = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  } catch (err) {
    throw new EvccError('IO_FAILED', `cannot read ${path}`, { path }, { cause: err });
  }
  return new Uint8Array(h.digest());
}
