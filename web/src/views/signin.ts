// Sign in: a token from the #token= fragment, a pasted one, or (development mode) a demo token.
import { demoToken } from "../config";
import { h } from "../dom";
import { tokenProblem } from "../token";
import type { App, View } from "./view";

export function signInView(app: App): View & { tell(message: string): void } {
  const message = h("p", { role: "alert", class: "message", "data-testid": "signin-message" });
  const token = h("textarea", { id: "token", rows: "3", autocomplete: "off", spellcheck: "false" });
  const who = h("p", { "data-testid": "signed-in-as" });
  const user = h("input", { id: "demo-user", type: "text", value: `guest-${Math.random().toString(36).slice(2, 7)}` });
  const demo = h(
    "form",
    { class: "row", hidden: !app.config.devMode, onsubmit: (e: Event) => void getDemo(e) },
    h("label", { for: "demo-user" }, "Name"),
    user,
    h("button", { type: "submit", "data-testid": "demo-token" }, "Get a demo token"),
  );

  function paste(event: Event): void {
    event.preventDefault();
    const value = token.value.trim();
    const problem = value ? tokenProblem(value, Date.now() / 1000) : "Paste a token first.";
    if (problem) {
      message.textContent = problem;
      return;
    }
    token.value = "";
    app.signIn(value, null);
    app.go("pulse");
  }

  async function getDemo(event: Event): Promise<void> {
    event.preventDefault();
    const name = user.value.trim();
    try {
      const first = await demoToken(app.config, name);
      app.signIn(first, () => demoToken(app.config, name));
      app.go("pulse");
    } catch (e) {
      message.textContent = `No demo token: ${(e as Error).message}`;
    }
  }

  const root = h(
    "section",
    { "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title", tabindex: "-1" }, "Sign in"),
    message,
    who,
    h(
      "form",
      { onsubmit: paste },
      h("div", { class: "slider" }, h("label", { for: "token" }, "Connection token (JWT)"), token),
      h("button", { type: "submit" }, "Sign in"),
      " ",
      h("button", { type: "button", onclick: () => app.signOut("Signed out.") }, "Sign out"),
    ),
    h("p", { class: "note" }, "Or open this page as …/#token=<jwt>: the fragment never reaches a server."),
    demo,
  );

  return {
    name: "signin",
    title: "Sign in",
    root,
    shown() {
      who.textContent = app.conn.user ? `Signed in as ${app.conn.user}.` : "Not signed in.";
    },
    tell(text: string) {
      message.textContent = text;
    },
  };
}
