/**
 * The bundle download transport as firmware/ sees it (issue #10): an HTTPS GET that may start at a byte offset
 * (Range) and streams the body, plus an append-only partial file in the data dir that survives a power loss. The
 * real implementations are `https-fetch.ts` (node:https, the OEM backend's CA only, TLS ≥ 1.2, no redirects, no
 * plain HTTP) and `partial-file.ts` (fsynced appends, atomic promotion).
 */
export type HttpErrorCode =
  /** The URL is not https:// (never downgraded to plain HTTP), or names no host. */
  | 'OTA_DOWNLOAD_URL_REFUSED'
  /** The server's chain does not verify against the OEM backend's CA, or its name does not match the URL. */
  | 'OTA_DOWNLOAD_TLS'
  /** Connection refused, reset, broken mid-body or idle beyond the timeout. */
  | 'OTA_DOWNLOAD_NETWORK'
  /** A status other than 200/206 (redirects are not followed), or a 206 whose Content-Range does not fit the request. */
  | 'OTA_DOWNLOAD_HTTP'
  /** 416: the requested start lies at or beyond the resource's end. */
  | 'OTA_DOWNLOAD_RANGE_UNSATISFIABLE';

export interface RangeResponse {
  /** 200 = the whole resource from byte 0 (the server ignored the Range); 206 = from `start`. */
  status: 200 | 206;
  /** Offset of the body's first byte in the resource. */
  start: number;
  /** Bytes the body will carry (Content-Length), when the server said. */
  length?: number;
  /** Size of the whole resource, when known (Content-Range total, or a 200's Content-Length). */
  total?: number;
  /** The body in chunks; ends normally only when the server finished; errors are typed (OTA_DOWNLOAD_NETWORK). */
  body: AsyncIterable<Uint8Array>;
  /** Stops the transfer (the body iterator ends). */
  abort(): void;
}

export interface BundleFetchPort {
  /** GET `url` from byte `start` (Range: bytes=start- when start > 0). Throws HttpErrorCode errors. */
  get(url: string, options: { start: number; signal?: AbortSignal }): Promise<RangeResponse>;
}

/** An append-only file being filled; every `sync()` makes what was appended so far survive a power loss. */
export interface PartialFile {
  /** Bytes in the file now. */
  readonly length: number;
  append(chunk: Uint8Array): Promise<void>;
  sync(): Promise<void>;
  /** Empties the file (the server sent the whole resource again). */
  truncate(): Promise<void>;
  /** Reads what the file holds, in chunks (to re-hash a partial file after a restart). */
  read(): AsyncIterable<Uint8Array>;
  close(): Promise<void>;
}

export interface PartialFilePort {
  /** Opens (creating when missing) the partial file at `path`, relative to the data dir. */
  open(path: string): Promise<PartialFile>;
  /** fsync + atomic rename of `from` to `to` (both relative to the data dir), then fsync of the directory. */
  promote(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
}
