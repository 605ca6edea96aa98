// One Centrifuge client for the whole page, and its state in words (always shown in the header).
import { Centrifuge, UnauthorizedError, decode, encode } from "./wire";
import type { Subscription } from "./wire";
import { claims } from "./token";

export type ConnKind = "signed_out" | "connecting" | "connected" | "reconnecting" | "refused" | "disconnected";

export interface ConnState {
  kind: ConnKind;
  text: string;
}

/** Close codes and SDK codes → what the person reads. Refusals say why and what to do next. */
export function describeDisconnect(code: number, reason: string): ConnState {
  switch (code) {
    case 0:
      return { kind: "signed_out", text: "signed out" };
    case 1:
      return { kind: "refused", text: "refused: the token expired or was refused — sign in again" };
    case 3500:
      return { kind: "refused", text: "refused: invalid token (3500) — check it was signed for this server" };
    case 3501:
      return { kind: "refused", text: "refused: bad request (3501)" };
    case 3005:
      return { kind: "refused", text: "refused: the connection expired (3005) — sign in again" };
    case 3507:
      return { kind: "refused", text: "refused: permission denied (3507) — the token has no user" };
    case 3503:
      return { kind: "disconnected", text: `disconnected by the server: ${reason || "force disconnect"} (3503)` };
    case 3509:
      return { kind: "disconnected", text: "disconnected: too many errors from this page (3509)" };
    default:
      return { kind: "disconnected", text: `disconnected: ${reason || "closed"} (${code})` };
  }
}

export class RpcFailure extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

type Listener = (state: ConnState) => void;

export class Connection {
  client: Centrifuge | null = null;
  user: string | null = null;
  state: ConnState = { kind: "signed_out", text: "not signed in" };
  private attempts = 0;
  private listeners: Listener[] = [];
  private connectedHooks: (() => void)[] = [];

  constructor(private readonly endpoint: string) {}

  onState(listener: Listener): void {
    this.listeners.push(listener);
    listener(this.state);
  }

  /** Called after every (re)connect: views re-read what they show. */
  onConnected(hook: () => void): void {
    this.connectedHooks.push(hook);
  }

  private set(state: ConnState): void {
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  /** Connect with a token; `refresh` (demo tokens) gets a new one when it expires, otherwise expiry signs out. */
  start(token: string, refresh: (() => Promise<string>) | null): void {
    this.stop();
    this.user = claims(token)?.sub ?? null;
    this.attempts = 0;
    const client = new Centrifuge(this.endpoint, {
      token,
      name: "resonance-console",
      getToken: async () => {
        if (refresh) return refresh();
        throw new UnauthorizedError("token expired");
      },
    });
    client.on("connecting", (ctx) => {
      this.attempts += 1;
      this.set(
        ctx.code === 0
          ? { kind: "connecting", text: "connecting…" }
          : { kind: "reconnecting", text: `reconnecting (attempt ${this.attempts}, ${ctx.reason}) with backoff` },
      );
    });
    client.on("connected", (ctx) => {
      this.attempts = 0;
      this.set({ kind: "connected", text: `connected as ${this.user ?? "anonymous"} (${ctx.client.slice(0, 8)})` });
      for (const hook of this.connectedHooks) hook();
    });
    client.on("disconnected", (ctx) => this.set(describeDisconnect(ctx.code, ctx.reason)));
    this.client = client;
    client.connect();
  }

  stop(): void {
    if (this.client) {
      this.client.removeAllListeners();
      this.client.disconnect();
    }
    this.client = null;
    this.set({ kind: "signed_out", text: "not signed in" });
  }

  get connected(): boolean {
    return this.state.kind === "connected";
  }

  async rpc<T>(method: string, data: unknown): Promise<T> {
    if (!this.client) throw new RpcFailure(0, "not signed in");
    try {
      const reply = await this.client.rpc(method, encode(data ?? {}));
      return decode<T>(reply.data);
    } catch (error) {
      const e = error as { code?: number; message?: string };
      throw new RpcFailure(e.code ?? 0, e.message ?? String(error));
    }
  }

  /** The page's subscription to a channel (created once, subscribed while connected). */
  channel(name: string, options: { joinLeave?: boolean } = {}): Subscription {
    if (!this.client) throw new RpcFailure(0, "not signed in");
    const existing = this.client.getSubscription(name);
    if (existing) return existing;
    const sub = this.client.newSubscription(name, { joinLeave: options.joinLeave ?? false });
    sub.subscribe();
    return sub;
  }

  async publish(channel: string, data: unknown): Promise<void> {
    if (!this.client) throw new RpcFailure(0, "not signed in");
    await this.client.publish(channel, encode(data));
  }
}
