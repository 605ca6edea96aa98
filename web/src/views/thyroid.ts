// The thyroid bar, live from system:thyroid: state, pain by source, insights.
import { clock, fill, fmt, h } from "../dom";
import { STATE_COLOURS, SOURCE_NAMES, barLevel, overloadFactor, pulseRate } from "../thyroid";
import type { ThyroidStatus } from "../thyroid";
import { decode } from "../wire";
import type { App, View } from "./view";

const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

/** A state's starting pain as people write it: 10, 7.5 (not 10.0 beside 30). */
const limit = (value: number): string => String(Math.round(value * 10) / 10);

export function thyroidView(app: App): View {
  const marker = h("div", { class: "marker" });
  const bar = h(
    "div",
    {
      class: "thyroid-bar",
      "data-testid": "thyroid-bar",
      role: "meter",
      "aria-label": "Platform pain",
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": "0",
    },
    h("span", { class: "zone" }, "calm"),
    h("span", { class: "zone" }, "stressed"),
    h("span", { class: "zone" }, "overloaded"),
    marker,
  );
  const state = h("strong", { "data-testid": "thyroid-state" }, "unknown");
  const pain = h("span", {}, "—");
  const rate = h("span", { "data-testid": "thyroid-rate" }, "");
  const pause = h(
    "button",
    { type: "button", "aria-pressed": "false", onclick: () => togglePause() },
    "Pause animation",
  );
  const sources = h("ul", { class: "sources", "aria-label": "Pain by source" });
  const insights = h("ol", { class: "insights", "data-testid": "insights" });
  const note = h("p", { class: "note" });
  const spoken = h("p", { class: "sr-only", "aria-live": "polite" });

  const root = h(
    "section",
    { "aria-labelledby": "thyroid-title" },
    h("h1", { id: "thyroid-title", tabindex: "-1" }, "Thyroid: how the platform feels"),
    h("p", {}, "Every error a worker sees is pain; pain decays. The bar pulses faster as it hurts more."),
    bar,
    h("p", { class: "row" }, "State: ", state, " · pain ", pain, " · ", rate, " ", pause),
    spoken,
    note,
    h("h2", {}, "Pain by source"),
    sources,
    h("h2", {}, "Insights"),
    insights,
  );

  let paused = false;
  let lastState = "";

  function togglePause(): void {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume animation" : "Pause animation";
    bar.classList.toggle("paused", paused);
  }

  function render(status: ThyroidStatus): void {
    const k = overloadFactor(status);
    const level = barLevel(status.pain, status.threshold, k);
    const perMinute = pulseRate(status.pain, status.threshold, k);
    bar.dataset.state = status.state;
    bar.dataset.overloadAt = String(k * status.threshold);
    bar.setAttribute("aria-valuenow", String(Math.round(level * 100)));
    bar.setAttribute("aria-valuetext", `${status.state}, pain ${status.pain.toFixed(1)} of threshold ${status.threshold}`);
    bar.style.setProperty("--level", String(level));
    bar.style.setProperty("--state-colour", STATE_COLOURS[status.state]);
    bar.style.setProperty("--period", `${(60 / perMinute).toFixed(2)}s`);
    state.textContent = status.state;
    pain.textContent = `${status.pain.toFixed(2)} (stressed from ${limit(status.threshold)}, overloaded from ${limit(k * status.threshold)})`;
    rate.textContent = reducedMotion.matches ? `pulse ${perMinute}/min (animation off: reduced motion)` : `pulse ${perMinute}/min`;
    if (status.state !== lastState) {
      spoken.textContent = `Platform ${status.state}`;
      lastState = status.state;
    }
    fill(
      sources,
      ...Object.entries(status.sources).map(([source, value]) =>
        h(
          "li",
          {},
          h("span", { class: "source-name" }, SOURCE_NAMES[source] ?? source),
          h("meter", { min: "0", max: String(status.threshold), value: String(value), "aria-label": SOURCE_NAMES[source] ?? source }),
          h("span", {}, fmt(value, 2)),
        ),
      ),
    );
    fill(
      insights,
      ...(status.insights.length
        ? status.insights.map((i) =>
            h(
              "li",
              {},
              h("strong", {}, `${clock(i.at)} ${i.state}`),
              ` — pain ${fmt(i.pain, 1)}, mostly ${SOURCE_NAMES[i.top_source] ?? i.top_source}`,
              i.top_share != null ? ` (${(i.top_share * 100).toFixed(0)} %)` : "",
              i.trend ? `, ${i.trend}` : "",
              i.suggested_action ? h("div", { class: "note" }, `Suggested: ${i.suggested_action}`) : null,
            ),
          )
        : [h("li", { class: "note" }, "No insights yet: one is written each time the pain pushes the thyroid into a worse state.")]),
    );
  }

  function load(): void {
    if (!app.conn.client) return;
    const sub = app.conn.channel("system:thyroid");
    sub.removeAllListeners("publication");
    sub.on("publication", (ctx) => render(decode<ThyroidStatus>(ctx.data)));
    app.conn
      .rpc<ThyroidStatus>("thyroid.status", {})
      .then(render)
      .catch((e: Error) => (note.textContent = `Could not read the status: ${e.message}`));
  }

  app.conn.onConnected(load);
  return { name: "thyroid", title: "Thyroid", root, shown: load };
}
