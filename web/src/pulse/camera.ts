// The camera side of the pulse: getUserMedia, one callback per decoded frame, the box drawn small into a
// canvas and reduced to its skin-colour mean. Frames stay in this tab; only the means go anywhere.
import { regionBox, sampleSize, skinMean } from "./frame";
import type { FrameMean, Region } from "./frame";

export type FrameSink = (t: number, mean: FrameMean) => void;

/** Why the camera could not start, in words a person can act on. */
export function cameraProblem(error: unknown): string {
  const name = (error as { name?: string }).name ?? "";
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "Camera access was denied. Allow the camera for this site in the browser's settings, then try again.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
    return "No camera was found. Connect one (or use a device that has one) and try again.";
  }
  if (name === "NotReadableError") return "The camera is in use by another application.";
  if (name === "Insecure") return "The camera needs a secure page (https, or localhost).";
  return `The camera could not start: ${String((error as Error).message ?? error)}`;
}

/** Milliseconds the page spent on each of the last frames, and on each plot redraw (read by bench/console). */
export const frameCost: number[] = [];
export const drawCost: number[] = [];

// Read by bench/console (page.evaluate); nothing in the page uses it.
(globalThis as { resonanceConsoleCosts?: object }).resonanceConsoleCosts = { frameCost, drawCost };

export function record(costs: number[], ms: number): void {
  costs.push(ms);
  if (costs.length > 900) costs.splice(0, costs.length - 900);
}

export class Camera {
  private stream: MediaStream | null = null;
  private running = false;
  private readonly canvas = document.createElement("canvas");
  private readonly ctx: CanvasRenderingContext2D;
  torch = false;

  constructor(
    readonly video: HTMLVideoElement,
    private readonly sink: FrameSink,
  ) {
    const ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    if (!ctx) throw new Error("no 2D canvas");
    this.ctx = ctx;
  }

  async start(region: Region): Promise<void> {
    if (!navigator.mediaDevices?.getUserMedia) throw Object.assign(new Error("insecure"), { name: "Insecure" });
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: {
        width: { ideal: 320 },
        height: { ideal: 240 },
        frameRate: { ideal: 30 },
        facingMode: region === "finger" ? "environment" : "user",
      },
    });
    const [track] = this.stream.getVideoTracks();
    this.torch = false;
    if (region === "finger") {
      const caps = (track.getCapabilities?.() ?? {}) as { torch?: boolean };
      if (caps.torch) {
        await track.applyConstraints({ advanced: [{ torch: true } as MediaTrackConstraintSet] }).catch(() => {});
        this.torch = true;
      }
    }
    this.video.srcObject = this.stream;
    this.video.muted = true;
    this.video.playsInline = true;
    await this.video.play();
    this.running = true;
    if ("MediaStreamTrackProcessor" in window) void this.everyFrame(track, region);
    else this.presentedFrames(region);
  }

  /** Chromium: every captured frame, stamped by the camera, none lost to the display's refresh. */
  private async everyFrame(track: MediaStreamTrack, region: Region): Promise<void> {
    type Processor = new (init: { track: MediaStreamTrack }) => { readable: ReadableStream<VideoFrame> };
    const Processor = (window as unknown as { MediaStreamTrackProcessor: Processor }).MediaStreamTrackProcessor;
    const reader = new Processor({ track: track.clone() }).readable.getReader();
    while (this.running) {
      const { value: frame, done } = await reader.read();
      if (done || !frame) break;
      this.frame(frame, frame.displayWidth, frame.displayHeight, frame.timestamp / 1e6, region);
      frame.close();
    }
    await reader.cancel().catch(() => {});
  }

  /** Elsewhere: the frames the video element presents (at most one per display refresh). */
  private presentedFrames(region: Region): void {
    const step = (_now: number, meta: VideoFrameCallbackMetadata) => {
      if (!this.running) return;
      this.frame(this.video, this.video.videoWidth, this.video.videoHeight, meta.mediaTime, region);
      this.video.requestVideoFrameCallback(step);
    };
    this.video.requestVideoFrameCallback(step);
  }

  private frame(source: CanvasImageSource, vw: number, vh: number, t: number, region: Region): void {
    const started = performance.now();
    if (!vw || !vh) return;
    const box = regionBox(region, vw, vh);
    const size = sampleSize(box);
    if (this.canvas.width !== size.w || this.canvas.height !== size.h) {
      this.canvas.width = size.w;
      this.canvas.height = size.h;
    }
    this.ctx.drawImage(source, box.x, box.y, box.w, box.h, 0, 0, size.w, size.h);
    const mean = skinMean(this.ctx.getImageData(0, 0, size.w, size.h).data, region === "face");
    this.sink(t, mean);
    record(frameCost, performance.now() - started);
  }

  stop(): void {
    this.running = false;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = null;
    this.video.srcObject = null;
  }
}
