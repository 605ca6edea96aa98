"""The console's cost per camera frame in Chromium, and its gzipped bundle size.

Run: ``.venv/bin/python -m bench.console.run [--seconds 20]``; writes ``bench/results/console.json``.

Debian's Chromium plays a generated 320×240, 30 fps synthetic face through its fake camera into the
console (served by a real worker and signed in to it, so the frames' colour means go out as ``bio.push``
batches as in use). **Ours** is the page's own work per frame: the face box drawn small into a canvas,
read back, skin-masked and averaged, handed to the batcher (``frameCost`` in web/src/pulse/camera.ts),
plus the plot redraws (4 a second) spread over the frames. The **baseline**, measured on the same frames
in the same page at the same time, is the least any pixel-reading page does: the whole frame drawn into a
canvas and read back with ``getImageData``. Targets (issue 16): under 2 ms a frame while holding 30 fps,
and under 150 KB gzipped.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import sync_playwright

from tests.harness.browser import fake_camera_flags, launch
from tests.harness.console import build_console
from tests.harness.worker import WorkerProcess
from tests.harness.y4m import Scene, write_y4m

RESULTS = Path(__file__).resolve().parent.parent / "results"

BASELINE = """() => {
  const video = document.querySelector('video.preview');
  const canvas = document.createElement('canvas');
  canvas.width = 320; canvas.height = 240;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  window.baselineCost = [];
  window.baselineFrames = 0;
  const step = () => {
    const t0 = performance.now();
    ctx.drawImage(video, 0, 0, 320, 240);
    ctx.getImageData(0, 0, 320, 240);
    window.baselineCost.push(performance.now() - t0);
    window.baselineFrames += 1;
    video.requestVideoFrameCallback(step);
  };
  video.requestVideoFrameCallback(step);
}"""


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {
        "n": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


def measure(seconds: float, workdir: Path) -> dict[str, Any]:
    dist = workdir / "dist"
    info = build_console(dist)
    video = write_y4m(workdir / "face-320.y4m", Scene(width=320, height=240, seconds=10 / 3, bpm=72.0))
    worker = WorkerProcess(
        workdir, {"RESONANCE_DEV_MODE": "true", "RESONANCE_CONSOLE_DIR": str(dist)}, name="bench-console"
    ).start()
    try:
        with sync_playwright() as pw:
            browser = launch(pw, *fake_camera_flags(video))
            page = browser.new_page(viewport={"width": 800, "height": 700})
            page.goto(f"{worker.base_url}/#token={worker.token('bench')}")
            page.wait_for_selector("[data-testid=connection-state][data-state=connected]")
            page.get_by_test_id("start-camera").click()
            page.wait_for_function("() => (window.resonanceConsoleCosts?.frameCost.length ?? 0) > 30")
            page.evaluate(
                "() => { window.resonanceConsoleCosts.frameCost.length = 0; "
                "window.resonanceConsoleCosts.drawCost.length = 0; }"
            )
            page.evaluate(BASELINE)
            started = time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - started
            costs = page.evaluate("() => window.resonanceConsoleCosts")
            baseline = page.evaluate("() => window.baselineCost")
            heart = page.get_by_test_id("heart-rate").inner_text()
            version = browser.version
            browser.close()
    finally:
        worker.stop()
    frame, draw, base = stats(costs["frameCost"]), stats(costs["drawCost"]), stats(baseline)
    per_frame_with_plots = frame["mean_ms"] + draw["mean_ms"] * len(costs["drawCost"]) / max(1, frame["n"])
    return {
        "chromium": version,
        "resolution": "320x240",
        "seconds": round(elapsed, 1),
        "fps": round(frame["n"] / elapsed, 1),
        "ours_frame": frame,
        "ours_plots": draw,
        "ours_per_frame_with_plots_ms": round(per_frame_with_plots, 3),
        "baseline_full_frame_readback": base,
        "ratio_p50_ours_to_baseline": round(frame["p50_ms"] / base["p50_ms"], 2) if base["p50_ms"] else None,
        "heart_rate_shown": heart,
        "bundle": info,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.seconds, Path(tmp))
    assets = result["bundle"]["assets"]
    gz = result["bundle"]["gzip_bytes"]
    print(
        f"Chromium {result['chromium']}, 320x240 fake camera, {result['seconds']} s: "
        f"{result['fps']} frames/s reached the page"
    )
    print(f"{'':34}{'p50 ms':>8}{'p95 ms':>8}{'mean ms':>9}")
    for name, key in (
        ("ours: per frame", "ours_frame"),
        ("ours: plot redraw (4/s)", "ours_plots"),
        ("baseline: full-frame readback", "baseline_full_frame_readback"),
    ):
        s = result[key]
        print(f"{name:34}{s['p50_ms']:>8}{s['p95_ms']:>8}{s['mean_ms']:>9}")
    print(
        f"ours per frame incl. plots (mean): {result['ours_per_frame_with_plots_ms']} ms (target < 2 ms); "
        f"p50 ratio ours/baseline {result['ratio_p50_ours_to_baseline']}"
    )
    print(
        f"bundle: js {gz[assets['js']]} B + css {gz[assets['css']]} B gzipped (target < 150 000 B); "
        f"heart rate shown: {result['heart_rate_shown']}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "console.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
