// Pulse from the camera: colour means in the browser, heart rate, HRV and breathing from the worker.
import { Batcher } from "../pulse/batch";
import type { RgbBatch } from "../pulse/batch";
import { Camera, cameraProblem, drawCost, record } from "../pulse/camera";
import type { FrameMean, Region } from "../pulse/frame";
import { displayWave } from "../pulse/wave";
import { linePlot } from "../plot";
import { RpcFailure } from "../connection";
import { fill, fmt, h } from "../dom";
import type { App, View } from "./view";

interface Reading {
  kind: "heart_rate" | "hrv" | "breathing" | "arousal";
  t: number;
  quality: number;
  reason: string | null;
  bpm?: number | null;
  rmssd_ms?: number | null;
  rate_bpm?: number | null;
  index?: number | null;
  level?: string | null;
}

/** The worker's reasons for "no estimate", said plainly. */
export const REASONS: Record<string, string> = {
  low_quality: "the signal is too weak or noisy to trust — hold still, face the light",
  motion: "too much movement",
  too_few_beats: "too few clear beats in the window",
  no_signal: "no pulse in the signal",
  modulations_disagree: "the breathing cues disagree",
  baseline_pending: "your baseline is still being learned",
  not_from_face_video: "needs a fingertip: face video is too coarse for beat-to-beat timing",
};

const WAVE_SECONDS = 10;

export function pulseView(app: App): View {
  const video = h("video", { class: "preview", "aria-label": "Camera preview (stays on this device)", muted: true });
  const box = h("div", { class: "box", "aria-hidden": "true" });
  const face = h("input", { type: "radio", name: "region", value: "face", id: "region-face", checked: true });
  const finger = h("input", { type: "radio", name: "region", value: "finger", id: "region-finger" });
  const start = h("button", { type: "button", "data-testid": "start-camera", onclick: () => void begin() }, "Start camera");
  const stop = h("button", { type: "button", disabled: true, onclick: () => void end() }, "Stop");
  const message = h("p", { class: "message", role: "alert", "data-testid": "camera-message" });
  const heart = h("output", { "data-testid": "heart-rate", class: "big", "aria-live": "off" }, "—");
  const heartNote = h("span", { class: "note", "data-testid": "heart-rate-note" }, "start the camera to measure");
  const quality = h("output", {}, "—");
  const hrv = h("output", {}, "—");
  const breathing = h("output", {}, "—");
  const arousal = h("output", {}, "—");
  const signal = h("p", { class: "note" });
  const spoken = h("p", { class: "sr-only", "aria-live": "polite" });
  const wave = linePlot("Pulse wave (colour signal, last 10 s; display only)", "a.u.", "#b3261e");
  const trend = linePlot("Heart rate (bpm)", "bpm", "#1f5fa8");

  const root = h(
    "section",
    { "aria-labelledby": "pulse-title" },
    h("h1", { id: "pulse-title", tabindex: "-1" }, "Pulse from the camera"),
    h(
      "p",
      { class: "privacy" },
      "Frames never leave the browser: the page sends only the mean colour of the skin in each frame — three numbers, about 30 times a second.",
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Sensor"),
      h("label", { for: "region-face" }, face, " Face (front camera, face in the box)"),
      h("label", { for: "region-finger" }, finger, " Fingertip over the lens (rear camera, torch where there is one)"),
    ),
    h("div", { class: "row" }, start, stop),
    message,
    h("div", { class: "camera" }, video, box),
    h(
      "dl",
      { class: "readings" },
      h("div", {}, h("dt", {}, "Heart rate"), h("dd", {}, heart, " ", heartNote)),
      h("div", {}, h("dt", {}, "Quality"), h("dd", {}, quality)),
      h("div", {}, h("dt", {}, "HRV (RMSSD)"), h("dd", {}, hrv)),
      h("div", {}, h("dt", {}, "Breathing"), h("dd", {}, breathing)),
      h("div", {}, h("dt", {}, "Arousal vs your baseline"), h("dd", {}, arousal)),
    ),
    signal,
    spoken,
    wave.figure,
    trend.figure,
  );

  let camera: Camera | null = null;
  let batcher: Batcher | null = null;
  let timer = 0;
  let drawTimer = 0;
  let inflight = false;
  let started = 0;
  let frames: { t: number; mean: FrameMean }[] = [];
  let hr: { t: number; bpm: number | null }[] = [];
  let lastSpoken = 0;

  const onFrame = (t: number, mean: FrameMean) => {
    batcher?.add(t, mean.rgb);
    frames.push({ t, mean });
    while (frames.length && frames[0].t < t - WAVE_SECONDS) frames.shift();
  };

  function draw(): void {
    const t0 = performance.now();
    if (frames.length > 2) {
      const last = frames[frames.length - 1].t;
      wave.set(
        frames.map((f) => f.t - last),
        displayWave(frames.map((f) => f.mean.rgb)).map((v) => (Number.isNaN(v) ? null : v)),
      );
      const skin = frames.reduce((s, f) => s + f.mean.skin, 0) / frames.length;
      const seen = frames.filter((f) => f.mean.rgb).length / frames.length;
      signal.textContent =
        region() === "face"
          ? `Skin in the box: ${(skin * 100).toFixed(0)} %; frames with a face: ${(seen * 100).toFixed(0)} %.`
          : `Frames: ${frames.length} in the last ${WAVE_SECONDS} s${camera?.torch ? "; torch on" : ""}.`;
    }
    if (hr.length) trend.set(hr.map((p) => p.t), hr.map((p) => p.bpm));
    record(drawCost, performance.now() - t0);
  }

  function region(): Region {
    return finger.checked ? "finger" : "face";
  }

  function show(readings: Reading[]): void {
    for (const r of readings) {
      if (r.kind === "heart_rate") {
        const elapsed = (performance.now() - started) / 1000;
        hr.push({ t: elapsed, bpm: r.bpm ?? null });
        if (hr.length > 600) hr.shift();
        quality.textContent = fmt(r.quality, 2);
        if (r.bpm !== null && r.bpm !== undefined) {
          heart.textContent = r.bpm.toFixed(0);
          heart.dataset.state = "estimate";
          heartNote.textContent = "bpm";
        } else {
          heart.textContent = "no estimate";
          heart.dataset.state = "none";
          heartNote.textContent = `— ${REASONS[r.reason ?? ""] ?? r.reason ?? "no reason given"}`;
        }
        if (elapsed - lastSpoken > 15) {
          lastSpoken = elapsed;
          spoken.textContent = r.bpm ? `Heart rate ${r.bpm.toFixed(0)} beats per minute` : "No heart-rate estimate";
        }
      } else if (r.kind === "hrv") {
        hrv.textContent = r.rmssd_ms != null ? `${r.rmssd_ms.toFixed(0)} ms` : `no estimate: ${REASONS[r.reason ?? ""] ?? r.reason}`;
      } else if (r.kind === "breathing") {
        breathing.textContent =
          r.rate_bpm != null ? `${r.rate_bpm.toFixed(0)} /min` : `no estimate: ${REASONS[r.reason ?? ""] ?? r.reason}`;
      } else if (r.kind === "arousal") {
        arousal.textContent = r.index != null ? `${r.index.toFixed(2)} (${r.level ?? ""})` : `no estimate: ${REASONS[r.reason ?? ""] ?? r.reason}`;
      }
    }
  }

  async function send(): Promise<void> {
    if (inflight || !batcher) return;
    const batch: RgbBatch | null = batcher.take();
    if (!batch) return;
    inflight = true;
    try {
      const reply = await app.conn.rpc<{ readings: Reading[] }>("bio.push", batch);
      show(reply.readings);
      if (!hr.length) heartNote.textContent = "measuring — the first estimate comes after about 6 s of signal";
    } catch (error) {
      const e = error as RpcFailure;
      message.textContent = `The worker refused a batch (${e.code}): ${e.message}. Starting a fresh stream.`;
      batcher = new Batcher(region());
      await app.conn.rpc("bio.stop", {}).catch(() => {});
    } finally {
      inflight = false;
    }
  }

  async function begin(): Promise<void> {
    fill(message);
    if (!app.conn.connected) {
      message.textContent = "Sign in first: the heart rate is computed by the worker.";
      return;
    }
    start.disabled = true;
    try {
      await app.conn.rpc("bio.stop", {}); // a fresh stream: the camera's clock starts anew
      camera = new Camera(video, onFrame);
      frames = [];
      hr = [];
      batcher = new Batcher(region());
      started = performance.now();
      await camera.start(region());
      box.hidden = region() !== "face";
      heart.textContent = "—";
      delete heart.dataset.state;
      heartNote.textContent = "measuring — the first estimate comes after about 6 s of signal";
      timer = window.setInterval(() => void send(), 1000);
      drawTimer = window.setInterval(draw, 250);
      stop.disabled = false;
      stop.focus();
    } catch (error) {
      camera?.stop();
      camera = null;
      message.textContent = error instanceof RpcFailure ? `The worker said: ${error.message}` : cameraProblem(error);
      start.disabled = false;
    }
  }

  async function end(): Promise<void> {
    window.clearInterval(timer);
    window.clearInterval(drawTimer);
    camera?.stop();
    camera = null;
    batcher = null;
    stop.disabled = true;
    start.disabled = false;
    start.focus();
    heartNote.textContent = "stopped";
    await app.conn.rpc("bio.stop", {}).catch(() => {});
  }

  return { name: "pulse", title: "Pulse", root };
}
