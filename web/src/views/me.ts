// Me: how I feel (state.report), and what the worker reflects back (self.reflect).
import { fill, fmt, h } from "../dom";
import type { App, View } from "./view";

interface Smoothed {
  valence: number;
  arousal: number;
  label: string | null;
  weight: number;
}

interface Reflection {
  home: { score: number | null; coherence: number | null; stability: number | null; pairs: number; explanation: string };
  harmony: { score: number | null; centre_valence: number | null; centre_arousal: number | null; states: number };
  self_understanding: { score: number | null; explanation?: string; sessions?: number; pairs?: number };
  questions: { id: string; text: string; key: string }[];
}

function slider(id: string, label: string, min: number, max: number, value: number): [HTMLElement, HTMLInputElement] {
  const input = h("input", { type: "range", id, min: String(min), max: String(max), step: "0.05", value: String(value) });
  const out = h("output", { for: id }, value.toFixed(2));
  input.addEventListener("input", () => (out.textContent = Number(input.value).toFixed(2)));
  return [h("div", { class: "slider" }, h("label", { for: id }, label), input, out), input];
}

export function meView(app: App): View {
  const [valenceRow, valence] = slider("valence", "Valence (unpleasant −1 … pleasant +1)", -1, 1, 0);
  const [arousalRow, arousal] = slider("arousal", "Arousal (calm 0 … activated 1)", 0, 1, 0.5);
  const label = h("input", { type: "text", id: "label", maxlength: "40", placeholder: "e.g. curious" });
  const result = h("p", { role: "status", "data-testid": "state-result" });
  const reflection = h("div", { "data-testid": "reflection" });
  const questions = h("ul", { class: "questions", "data-testid": "questions" });

  async function report(event: Event): Promise<void> {
    event.preventDefault();
    const data: Record<string, unknown> = { valence: Number(valence.value), arousal: Number(arousal.value) };
    if (label.value.trim()) data.label = label.value.trim();
    try {
      const reply = await app.conn.rpc<{ state: Smoothed }>("state.report", data);
      const s = reply.state;
      result.textContent = `Shared. Your smoothed state: valence ${fmt(s.valence, 2)}, arousal ${fmt(s.arousal, 2)}${s.label ? ` (${s.label})` : ""}.`;
    } catch (e) {
      result.textContent = `Not shared: ${(e as Error).message}`;
    }
  }

  async function reflect(): Promise<void> {
    try {
      const r = await app.conn.rpc<Reflection>("self.reflect", {});
      fill(
        reflection,
        h(
          "dl",
          { class: "readings" },
          h("div", {}, h("dt", {}, "Home"), h("dd", {}, r.home.score != null ? fmt(r.home.score, 2) : "not yet", h("div", { class: "note" }, r.home.explanation))),
          h("div", {}, h("dt", {}, "Harmony (last hour)"), h("dd", {}, r.harmony.score != null ? fmt(r.harmony.score, 2) : "not yet", h("div", { class: "note" }, `${r.harmony.states} states`))),
          h("div", {}, h("dt", {}, "Self-understanding"), h("dd", {}, r.self_understanding.score != null ? fmt(r.self_understanding.score, 2) : "not yet", h("div", { class: "note" }, r.self_understanding.explanation ?? ""))),
        ),
      );
      fill(questions, ...(r.questions.length ? r.questions.map((q) => h("li", {}, q.text)) : [h("li", { class: "note" }, "No questions yet: they come from your reports next to your body's signals.")]));
    } catch (e) {
      fill(reflection, h("p", {}, `Could not reflect: ${(e as Error).message}`));
    }
  }

  const root = h(
    "section",
    { "aria-labelledby": "me-title" },
    h("h1", { id: "me-title", tabindex: "-1" }, "Me"),
    h(
      "form",
      { onsubmit: (e: Event) => void report(e) },
      h("fieldset", {}, h("legend", {}, "How do you feel?"), valenceRow, arousalRow, h("div", { class: "slider" }, h("label", { for: "label" }, "A word for it (optional)"), label)),
      h("button", { type: "submit" }, "Share how I feel"),
    ),
    result,
    h("h2", {}, "Reflection"),
    h("p", { class: "note" }, "Comparisons of your own reports with your own body's signals — prompts, not assessments."),
    h("button", { type: "button", onclick: () => void reflect() }, "Reflect"),
    reflection,
    h("h2", {}, "Questions"),
    questions,
  );
  return { name: "me", title: "Me", root };
}
