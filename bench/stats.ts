/** Median/min/max of a sample; benches report medians and ratios, never single runs. */
export function summarize(samples: number[]): { median: number; min: number; max: number; n: number } {
  if (samples.length === 0) throw new Error('no samples');
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, n: s.length };
}
