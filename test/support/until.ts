/** Polls `cond` until it holds; fails with "timed out waiting for <what>" after `ms`. For waiting on real peers. */
export async function until(cond: () => boolean, ms = 5_000, what = 'condition', pollMs = 20): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
