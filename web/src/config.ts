// Where the worker is. Served by the worker itself, the console talks to its own origin; config.json
// (next to index.html, optional) can point it elsewhere and says whether the worker is in development mode.

export interface Config {
  /** Base URL of the worker's HTTP endpoints (/token, /api, /thyroid/status). */
  http: string;
  /** The WebSocket endpoint. */
  websocket: string;
  /** POST /token mints demo tokens (RESONANCE_DEV_MODE=true). */
  devMode: boolean;
}

export async function loadConfig(): Promise<Config> {
  let raw: { server?: string; websocket?: string; dev_mode?: boolean } = {};
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (response.ok) raw = await response.json();
  } catch {
    // no config.json: the defaults below
  }
  const http = (raw.server ?? location.origin).replace(/\/$/, "");
  const websocket = raw.websocket ?? http.replace(/^http/, "ws") + "/connection/websocket";
  return { http, websocket, devMode: raw.dev_mode === true };
}

/** A demo token from POST /token (development mode only). Throws with the worker's message. */
export async function demoToken(config: Config, user: string): Promise<string> {
  const response = await fetch(`${config.http}/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user, ttl: 3600 }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ?? `HTTP ${response.status}`);
  return body.token as string;
}
