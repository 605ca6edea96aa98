// The wire encoding. build.mjs picks it (RESONANCE_CONSOLE_ENCODING): with "protobuf" it aliases
// `centrifuge` to `centrifuge/build/protobuf` and sets __PROTOBUF__, and data crosses the wire as bytes.
export { Centrifuge, UnauthorizedError } from "centrifuge";
export type { Subscription, PublicationContext, JoinContext, LeaveContext } from "centrifuge";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Application data as the SDK wants it: the object itself (JSON) or its JSON text as bytes (protobuf). */
export function encode(value: unknown): unknown {
  return __PROTOBUF__ ? encoder.encode(JSON.stringify(value)) : value;
}

/** The inverse of encode, for replies and publications. */
export function decode<T = unknown>(data: unknown): T {
  if (__PROTOBUF__ && data instanceof Uint8Array) return JSON.parse(decoder.decode(data)) as T;
  return data as T;
}
