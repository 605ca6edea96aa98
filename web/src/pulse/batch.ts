// Frames are batched once a second into one bio.push (kind "rgb"): timestamps in seconds, strictly
// increasing, and a [r, g, b] row per frame (null: the frame had too little skin, a gap for the worker).
import type { Region } from "./frame";

export interface RgbBatch {
  kind: "rgb";
  t: number[];
  values: ([number, number, number] | null)[];
  region?: Region;
  face_method?: "pos" | "chrom";
}

export class Batcher {
  private t: number[] = [];
  private values: ([number, number, number] | null)[] = [];
  private last = -Infinity;
  private first = true;

  constructor(private readonly region: Region) {}

  /** One frame at time `t` (seconds). Frames that do not move time forward are dropped. */
  add(t: number, rgb: [number, number, number] | null): void {
    if (!(t > this.last)) return;
    this.last = t;
    this.t.push(Math.round(t * 1e4) / 1e4);
    this.values.push(rgb && [round2(rgb[0]), round2(rgb[1]), round2(rgb[2])]);
  }

  get pending(): number {
    return this.t.length;
  }

  /** Everything since the last take, or null; the first batch names the region (and POS for a face). */
  take(): RgbBatch | null {
    if (this.t.length === 0) return null;
    const batch: RgbBatch = { kind: "rgb", t: this.t, values: this.values };
    if (this.first) {
      batch.region = this.region;
      if (this.region === "face") batch.face_method = "pos";
      this.first = false;
    }
    this.t = [];
    this.values = [];
    return batch;
  }
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}
