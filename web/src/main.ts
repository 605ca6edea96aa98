// The console: a header with the connection state, a nav, one view at a time (#/pulse, #/thyroid, …).
import "./styles.css";
import { loadConfig } from "./config";
import { Connection } from "./connection";
import { h } from "./dom";
import { stored, tokenFromFragment, tokenProblem } from "./token";
import { adminView } from "./views/admin";
import { meView } from "./views/me";
import { pulseView } from "./views/pulse";
import { roomsView } from "./views/rooms";
import { signInView } from "./views/signin";
import { thyroidView } from "./views/thyroid";
import type { App, View } from "./views/view";

async function boot(): Promise<void> {
  const config = await loadConfig();
  const conn = new Connection(config.websocket);
  const main = document.getElementById("main")!;
  const nav = document.getElementById("nav")!;
  const header = document.getElementById("conn")!;

  const views = new Map<string, View>();
  let current: View | null = null;

  const app: App = {
    config,
    conn,
    go(name: string) {
      if (location.hash !== `#/${name}`) location.hash = `#/${name}`;
      else show(name);
    },
    signIn(token, refresh) {
      stored.set(token);
      conn.start(token, refresh);
    },
    signOut(message) {
      stored.clear();
      conn.stop();
      signin.tell(message ?? "");
      app.go("signin");
    },
  };

  const signin = signInView(app);
  for (const view of [signin, pulseView(app), thyroidView(app), meView(app), roomsView(app), adminView(app)]) {
    views.set(view.name, view);
    view.root.hidden = true;
    main.append(view.root);
    nav.append(h("a", { href: `#/${view.name}`, "data-view": view.name }, view.title));
  }

  function show(name: string): void {
    const view = views.get(name) ?? views.get("pulse")!;
    if (current === view) return;
    if (current) current.root.hidden = true;
    current = view;
    view.root.hidden = false;
    for (const link of nav.querySelectorAll("a")) {
      if (link.dataset.view === view.name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    document.title = `${view.title} · Resonance console`;
    view.shown?.();
    view.root.querySelector<HTMLElement>("h1")?.focus();
  }

  conn.onState((state) => {
    header.textContent = state.text;
    header.dataset.state = state.kind;
    if (state.kind === "refused") {
      stored.clear();
      signin.tell(`The worker ${state.text}.`);
      app.go("signin");
    }
  });

  window.addEventListener("hashchange", () => {
    const fresh = tokenFromFragment(location.hash);
    if (fresh) return adopt(fresh);
    show(location.hash.replace(/^#\/?/, "") || "pulse");
  });

  function adopt(token: string): void {
    history.replaceState(null, "", location.pathname + location.search + "#/pulse"); // the token leaves the URL
    const problem = tokenProblem(token, Date.now() / 1000);
    if (problem) {
      signin.tell(problem);
      show("signin");
      return;
    }
    app.signIn(token, null);
    show("pulse");
  }

  const fromFragment = tokenFromFragment(location.hash);
  const kept = stored.get();
  if (fromFragment) adopt(fromFragment);
  else if (kept && !tokenProblem(kept, Date.now() / 1000)) {
    conn.start(kept, null);
    show(location.hash.replace(/^#\/?/, "") || "pulse");
  } else {
    if (kept) signin.tell("Your token expired. Sign in again.");
    show(location.hash.replace(/^#\/?/, "") === "admin" ? "admin" : "signin");
  }
}

void boot();
