// The pulse wave drawn on the page: a POS projection (Wang et al. 2017) of the recent colour means,
// detrended, for display only. The heart rate itself comes from the worker (bio.push readings).

/** rows: [r, g, b] per frame (null = missing); returns one value per row (NaN where missing). */
export function displayWave(rows: ([number, number, number] | null)[], smooth = 3, detrend = 30): number[] {
  const n = rows.length;
  const out = new Array<number>(n).fill(Number.NaN);
  let sr = 0;
  let sg = 0;
  let sb = 0;
  let k = 0;
  for (const row of rows) {
    if (row) {
      sr += row[0];
      sg += row[1];
      sb += row[2];
      k += 1;
    }
  }
  if (k < 2) return out;
  const mr = sr / k;
  const mg = sg / k;
  const mb = sb / k;
  const s1: number[] = [];
  const s2: number[] = [];
  for (const row of rows) {
    if (!row) continue;
    const r = row[0] / mr;
    const g = row[1] / mg;
    const b = row[2] / mb;
    s1.push(g - b);
    s2.push(-2 * r + g + b);
  }
  const alpha = std(s2) > 0 ? std(s1) / std(s2) : 0;
  let j = 0;
  const raw = new Array<number>(n).fill(Number.NaN);
  rows.forEach((row, i) => {
    if (row) raw[i] = s1[j] + alpha * s2[j++];
  });
  const trend = movingMean(raw, detrend);
  const fine = movingMean(raw, smooth);
  for (let i = 0; i < n; i += 1) out[i] = fine[i] - trend[i];
  return out;
}

function std(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) * (b - m), 0) / xs.length);
}

/** Centred moving mean over `width` samples, skipping NaN. */
export function movingMean(xs: number[], width: number): number[] {
  const half = Math.floor(width / 2);
  return xs.map((x, i) => {
    if (Number.isNaN(x)) return Number.NaN;
    let s = 0;
    let c = 0;
    for (let j = Math.max(0, i - half); j <= Math.min(xs.length - 1, i + half); j += 1) {
      if (!Number.isNaN(xs[j])) {
        s += xs[j];
        c += 1;
      }
    }
    return s / c;
  });
}
