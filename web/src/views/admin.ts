// Admin: the server API (POST /api/<method>, "Authorization: apikey <key>") — nodes, connections,
// channels with presence, publish, disconnect — and the feature flags in force with their A/B counts
// (GET /features). The key lives in this tab's session storage only.
import type { Config } from "../config";
import { fill, h } from "../dom";
import type { App, View } from "./view";

const KEY = "resonance.apikey";

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function callApi<T>(config: Config, key: string, method: string, body: unknown = {}): Promise<T> {
  const response = await fetch(`${config.http}/api/${method}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `apikey ${key}` },
    body: JSON.stringify(body),
  });
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    const why = payload?.error?.message ?? `HTTP ${response.status}`;
    throw new ApiFailure(response.status, response.status === 401 ? "the API key was refused" : why);
  }
  return payload.result as T;
}

interface NodeInfo {
  name: string;
  version?: string;
  uptime?: number;
  num_clients?: number;
  num_users?: number;
  num_subs?: number;
  num_channels?: number;
}

/** "12 connections on worker-a" (or "1000 of 2345 …" when the reply was capped). */
function listed(shown: number, total: number, what: string, node: string): string {
  return `${shown === total ? total : `${shown} of ${total}`} ${what} on ${node} (the worker that answered).`;
}

interface FlagReport {
  name: string;
  enabled: boolean;
  rollout: number;
  variants: Record<string, number>;
  gates: { rpc: string[]; namespaces: string[] };
  counts: { exposures?: Record<string, number>; outcomes?: Record<string, number> };
}

/** "on 12 · off 30": a flag's counts by variant (or variant:outcome). */
function counted(counts: Record<string, number> | undefined): string {
  return Object.entries(counts ?? {}).map(([k, n]) => `${k} ${n}`).join(" · ") || "—";
}

export async function fetchFeatures(config: Config, key: string): Promise<{ version: string; flags: FlagReport[] }> {
  const response = await fetch(`${config.http}/features`, { headers: { Authorization: `apikey ${key}` } });
  if (!response.ok) throw new ApiFailure(response.status, response.status === 401 ? "the API key was refused" : `HTTP ${response.status}`);
  return response.json();
}

function table(head: string[], rows: (string | number | HTMLElement)[][], label: string): HTMLElement {
  return h(
    "table",
    { "aria-label": label },
    h("thead", {}, h("tr", {}, ...head.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))),
  );
}

export function adminView(app: App): View {
  const key = h("input", { id: "api-key", type: "password", autocomplete: "off" });
  const keyState = h("p", { role: "status", "data-testid": "admin-key-state" });
  const result = h("p", { role: "status", "data-testid": "admin-result" });
  const nodes = h("div", { "data-testid": "admin-nodes" });
  const connections = h("div", { "data-testid": "admin-connections" });
  const channels = h("div", { "data-testid": "admin-channels" });
  const presence = h("div", { "data-testid": "admin-presence" });
  const features = h("div", { "data-testid": "admin-features" });
  const pubChannel = h("input", { id: "pub-channel", type: "text", value: "chat:lobby" });
  const pubData = h("textarea", { id: "pub-data", rows: "3" }, '{"text": "hello from the admin"}');
  const discUser = h("input", { id: "disc-user", type: "text" });
  const discReason = h("input", { id: "disc-reason", type: "text", value: "disconnected by an admin" });
  let timer = 0;

  const current = (): string | null => sessionStorage.getItem(KEY);

  async function api<T>(method: string, body: unknown = {}): Promise<T> {
    const k = current();
    if (!k) throw new ApiFailure(0, "enter the server API key first");
    return callApi<T>(app.config, k, method, body);
  }

  async function refresh(): Promise<void> {
    if (!current()) return;
    try {
      const info = await api<{ nodes: NodeInfo[] }>("info");
      fill(nodes, table(["node", "version", "uptime (s)", "clients", "users", "subscriptions", "channels"],
        info.nodes.map((n) => [n.name, n.version ?? "", n.uptime ?? "", n.num_clients ?? "", n.num_users ?? "", n.num_subs ?? "", n.num_channels ?? ""]), "Nodes"));
      const conns = await api<{ connections: Record<string, { user: string; node: string; channels: string[] }>; total: number; node: string }>("connections");
      fill(connections, table(["client", "user", "node", "channels"],
        Object.entries(conns.connections).map(([c, i]) => [c, i.user || "(anonymous)", i.node, i.channels.join(", ")]), "Connections"),
        h("p", { class: "note" }, listed(Object.keys(conns.connections).length, conns.total, "connections", conns.node)));
      const chans = await api<{ channels: Record<string, { num_clients: number }>; total: number; node: string }>("channels");
      fill(channels, table(["channel", "clients", ""],
        Object.entries(chans.channels).map(([name, c]) => [name, c.num_clients, h("button", { type: "button", onclick: () => void showPresence(name) }, `Presence of ${name}`)]), "Channels"),
        h("p", { class: "note" }, listed(Object.keys(chans.channels).length, chans.total, "channels", chans.node)));
      const flags = await fetchFeatures(app.config, current() ?? "");
      fill(features, flags.flags.length === 0 ? h("p", {}, "No feature flags on this worker.") : table(
        ["flag", "rollout", "variants", "gates", "exposures", "outcomes"],
        flags.flags.map((f) => [
          f.enabled ? f.name : `${f.name} (off)`,
          `${f.rollout} %`,
          Object.entries(f.variants).map(([v, w]) => `${v} ${w} %`).join(", ") || "—",
          [...f.gates.rpc, ...f.gates.namespaces.map((n) => `${n}:*`)].join(", ") || "—",
          counted(f.counts.exposures),
          counted(f.counts.outcomes),
        ]), "Feature flags"),
        h("p", { class: "note" }, `Flag set ${flags.version}; counts since this worker started (the sum over workers is in the metrics).`));
      result.textContent = `Updated ${new Date().toLocaleTimeString([], { hour12: false })}.`;
    } catch (e) {
      result.textContent = `Server API: ${(e as Error).message}`;
    }
  }

  async function showPresence(channel: string): Promise<void> {
    try {
      const p = await api<{ presence: Record<string, { user: string; client: string }> }>("presence", { channel });
      fill(presence, h("h3", {}, `Presence in ${channel}`), table(["client", "user"], Object.values(p.presence).map((i) => [i.client, i.user]), `Presence in ${channel}`));
    } catch (e) {
      fill(presence, h("p", {}, `Presence of ${channel}: ${(e as Error).message}`));
    }
  }

  async function publish(event: Event): Promise<void> {
    event.preventDefault();
    let data: unknown;
    try {
      data = JSON.parse(pubData.value);
    } catch {
      result.textContent = "The data must be JSON.";
      return;
    }
    try {
      const r = await api<{ offset: number }>("publish", { channel: pubChannel.value.trim(), data });
      result.textContent = `Published to ${pubChannel.value.trim()} (offset ${r.offset}).`;
    } catch (e) {
      result.textContent = `Not published: ${(e as Error).message}`;
    }
  }

  async function disconnect(event: Event): Promise<void> {
    event.preventDefault();
    try {
      await api("disconnect", { user: discUser.value.trim(), reason: discReason.value.trim() || "disconnected by an admin" });
      result.textContent = `Disconnected ${discUser.value.trim()} on every worker.`;
      void refresh();
    } catch (e) {
      result.textContent = `Not disconnected: ${(e as Error).message}`;
    }
  }

  function useKey(event: Event): void {
    event.preventDefault();
    if (!key.value) return;
    sessionStorage.setItem(KEY, key.value);
    key.value = "";
    keyState.textContent = "Key kept for this tab only (session storage).";
    void refresh();
  }

  function forget(): void {
    sessionStorage.removeItem(KEY);
    keyState.textContent = "Key forgotten.";
  }

  const root = h(
    "section",
    { "aria-labelledby": "admin-title" },
    h("h1", { id: "admin-title", tabindex: "-1" }, "Admin"),
    h("form", { class: "row", onsubmit: useKey }, h("label", { for: "api-key" }, "Server API key"), key, h("button", { type: "submit" }, "Use key"), h("button", { type: "button", onclick: forget }, "Forget key")),
    keyState,
    result,
    h("div", { class: "row" }, h("button", { type: "button", onclick: () => void refresh() }, "Refresh")),
    h("h2", {}, "Nodes"),
    nodes,
    h("h2", {}, "Connections"),
    connections,
    h("h2", {}, "Channels"),
    channels,
    presence,
    h("h2", {}, "Publish"),
    h("form", { onsubmit: (e: Event) => void publish(e) },
      h("div", { class: "slider" }, h("label", { for: "pub-channel" }, "Channel"), pubChannel),
      h("div", { class: "slider" }, h("label", { for: "pub-data" }, "Data (JSON)"), pubData),
      h("button", { type: "submit", "data-testid": "admin-publish" }, "Publish")),
    h("h2", {}, "Disconnect a user"),
    h("form", { onsubmit: (e: Event) => void disconnect(e) },
      h("div", { class: "slider" }, h("label", { for: "disc-user" }, "User"), discUser),
      h("div", { class: "slider" }, h("label", { for: "disc-reason" }, "Reason"), discReason),
      h("button", { type: "submit", "data-testid": "admin-disconnect" }, "Disconnect")),
    h("h2", {}, "Feature flags"),
    features,
  );

  return {
    name: "admin",
    title: "Admin",
    root,
    shown() {
      keyState.textContent = current() ? "A key is set for this tab." : "No key yet: the server API key (RESONANCE_API_KEY).";
      window.clearInterval(timer);
      void refresh();
      timer = window.setInterval(() => {
        if (root.isConnected && !document.hidden) void refresh();
      }, 5000);
    },
  };
}
