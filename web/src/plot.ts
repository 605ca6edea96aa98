// Small line plots on uPlot (Canvas 2D, no animation). Each sits in a <figure> with a text caption
// carrying the latest value, so the canvas is decoration for screen readers.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./dom";

export interface LinePlot {
  figure: HTMLElement;
  set(xs: number[], ys: (number | null)[]): void;
}

export function linePlot(title: string, unit: string, colour: string, range?: [number, number]): LinePlot {
  const host = h("div", { class: "plot", "aria-hidden": "true" });
  const figure = h("figure", { class: "figure" }, host, h("figcaption", {}, title));
  let chart: uPlot | null = null;
  let pending: uPlot.AlignedData = [[], []];
  const build = () => {
    const width = Math.max(240, Math.min(640, host.clientWidth || 480));
    chart = new uPlot(
      {
        width,
        height: 140,
        legend: { show: false },
        cursor: { show: false },
        scales: { x: { time: false }, y: range ? { range } : { auto: true } },
        axes: [
          { stroke: "#444", grid: { stroke: "#eee" }, values: (_u, ticks) => ticks.map((t) => `${t.toFixed(0)} s`) },
          { stroke: "#444", grid: { stroke: "#eee" }, size: 44, label: unit },
        ],
        series: [{}, { stroke: colour, width: 2, spanGaps: false, points: { show: false } }],
      },
      pending,
      host,
    );
  };
  return {
    figure,
    set(xs, ys) {
      pending = [xs, ys];
      if (!chart && host.isConnected) build();
      chart?.setData(pending);
    },
  };
}
