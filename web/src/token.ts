// Connection tokens: read from the URL fragment (never sent to a server, so never in its logs), kept in
// session storage for reloads of this tab, and decoded (not verified: the worker does that) for display.

const KEY = "resonance.token";

export interface Claims {
  sub?: string;
  exp?: number;
}

/** The token in a `#token=<jwt>` fragment, or null. */
export function tokenFromFragment(hash: string): string | null {
  if (!hash.startsWith("#token=")) return null;
  const token = new URLSearchParams(hash.slice(1)).get("token");
  return token && token.trim() ? token.trim() : null;
}

/** The payload of a JWT, or null when it is not one. */
export function claims(token: string): Claims | null {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const payload: unknown = JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)));
    return payload && typeof payload === "object" ? (payload as Claims) : null;
  } catch {
    return null;
  }
}

/** Why a token cannot be used as it is (null: worth trying). */
export function tokenProblem(token: string, nowSeconds: number): string | null {
  const c = claims(token);
  if (c === null) return "That is not a JWT (three base64url parts separated by dots).";
  if (typeof c.exp === "number" && c.exp <= nowSeconds) {
    return `That token expired at ${new Date(c.exp * 1000).toLocaleString()}. Ask for a new one.`;
  }
  return null;
}

export const stored = {
  get: (): string | null => sessionStorage.getItem(KEY),
  set: (token: string): void => sessionStorage.setItem(KEY, token),
  clear: (): void => sessionStorage.removeItem(KEY),
};
