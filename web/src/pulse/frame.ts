// Per-frame colour means: the only thing about a camera frame that leaves the browser. Pure functions on
// RGBA pixels, so the page and the benchmark run exactly this code.

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export type Region = "face" | "finger";

/** Where to look: a centred box where a face sits in a selfie view, or the whole frame for a fingertip. */
export function regionBox(region: Region, width: number, height: number): Box {
  if (region === "finger") return { x: 0, y: 0, w: width, h: height };
  const w = Math.round(width * 0.4);
  const h = Math.round(height * 0.6);
  return { x: Math.round((width - w) / 2), y: Math.round(height * 0.15), w, h };
}

/** The box scaled down so the longer side is at most `max` pixels (means need no more, and it is cheap). */
export function sampleSize(box: Box, max = 96): { w: number; h: number } {
  const scale = Math.min(1, max / Math.max(box.w, box.h));
  return { w: Math.max(1, Math.round(box.w * scale)), h: Math.max(1, Math.round(box.h * scale)) };
}

export interface FrameMean {
  /** Mean R, G, B of the skin pixels (0..255), or null when too little skin was seen. */
  rgb: [number, number, number] | null;
  /** Share of the box's pixels that passed the skin mask (1 for a fingertip: no mask). */
  skin: number;
}

/** Below this share of skin pixels the frame is reported missing (null), not guessed. */
export const MIN_SKIN = 0.2;

/**
 * Mean colour of the skin pixels in RGBA data. The skin mask is the YCbCr box of Chai & Ngan (1999):
 * Cb 77..127 and Cr 133..173, which holds for skin of every tone under white-ish light.
 */
export function skinMean(rgba: Uint8ClampedArray, mask: boolean): FrameMean {
  let r = 0;
  let g = 0;
  let b = 0;
  let n = 0;
  const total = rgba.length >> 2;
  for (let i = 0; i < rgba.length; i += 4) {
    const R = rgba[i];
    const G = rgba[i + 1];
    const B = rgba[i + 2];
    if (mask) {
      const cb = 128 - 0.168736 * R - 0.331264 * G + 0.5 * B;
      const cr = 128 + 0.5 * R - 0.418688 * G - 0.081312 * B;
      if (cb < 77 || cb > 127 || cr < 133 || cr > 173) continue;
    }
    r += R;
    g += G;
    b += B;
    n += 1;
  }
  const skin = total ? n / total : 0;
  if (n === 0 || (mask && skin < MIN_SKIN)) return { rgb: null, skin };
  return { rgb: [r / n, g / n, b / n], skin };
}
