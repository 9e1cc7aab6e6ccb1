import { EvccError } from '../../core/errors.ts';

/** Normalises a store-relative path and refuses escapes. */
export function safeRelative(path: string): string {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.some((p) => p === '..') || path.startsWith('/')) {
    throw new EvccError('IO_FAILED', `store path not allowed: ${path}`, { path });
  }
  return parts.join('/');
}
