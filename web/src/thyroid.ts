// The thyroid's status drawn as a gradient bar: where the pain sits between calm, stressed and
// overloaded, and how fast the bar pulses. Pure functions; the view applies them.

export type ThyroidState = "calm" | "stressed" | "overloaded";

export interface ThyroidStatus {
  pain: number;
  threshold: number;
  /** Overloaded from overload_factor × threshold (RESONANCE_LIVING__THYROID_OVERLOAD_FACTOR). */
  overload_factor?: number;
  state: ThyroidState;
  sources: Record<string, number>;
  insights: ThyroidInsight[];
  updated_at: number;
}

export interface ThyroidInsight {
  at: number;
  state: ThyroidState;
  pain: number;
  top_source: string;
  top_share?: number;
  trend?: string;
  suggested_action?: string;
  summary?: string;
}

/** The worker's default overload factor (k): overloaded at k × threshold (docs/living-core.md); used
 * only when a status does not carry its own (`overload_factor`, reported since issue 16). */
export const OVERLOAD_FACTOR = 3;

/** The status's overload factor, or the default when absent or not above 1. */
export function overloadFactor(status: Pick<ThyroidStatus, "overload_factor">): number {
  const k = status.overload_factor;
  return typeof k === "number" && k > 1 ? k : OVERLOAD_FACTOR;
}

/** 0..1 along the bar: calm fills the first third up to the threshold, stressed the second up to k·T,
 * overloaded the last (full at 2·k·T). */
export function barLevel(pain: number, threshold: number, k = OVERLOAD_FACTOR): number {
  const t = threshold > 0 ? threshold : 1;
  const p = Math.max(0, pain);
  if (p < t) return (p / t) / 3;
  if (p < k * t) return 1 / 3 + ((p - t) / ((k - 1) * t)) / 3;
  return Math.min(1, 2 / 3 + ((p - k * t) / (k * t)) / 3);
}

/** Pulses per minute: 40 at rest, rising with the pain to 120 (2 Hz: under 3 flashes a second, WCAG 2.3.1). */
export function pulseRate(pain: number, threshold: number, k = OVERLOAD_FACTOR): number {
  return Math.round(40 + 80 * Math.min(1, Math.max(0, pain) / (k * (threshold > 0 ? threshold : 1))));
}

export const STATE_COLOURS: Record<ThyroidState, string> = {
  calm: "#2e7d5b",
  stressed: "#b86e00",
  overloaded: "#a3302a",
};

export const SOURCE_NAMES: Record<string, string> = {
  protocol_error: "protocol errors",
  limit_hit: "limits hit",
  auth_failure: "auth failures",
  engine_timeout: "engine (Redis) timeouts",
  neo4j_failure: "Neo4j failures",
  server_error: "server errors",
  disconnect_storm: "disconnect storms",
};
