// Types of the resonance-yjs provider (clients/yjs-provider/index.mjs, plain ESM; build.mjs aliases it).
declare module "resonance-yjs" {
  import type { Centrifuge } from "centrifuge";
  import type * as Y from "yjs";
  import type { Awareness } from "y-protocols/awareness";

  /** How application data crosses: as is (JSON), or JSON text as bytes (the SDK's protobuf build). */
  export interface Codec {
    encode(value: unknown): unknown;
    decode(data: unknown): any;
  }
  export const JSON_BYTES: Codec;

  export class ResonanceYjsProvider {
    constructor(centrifuge: Centrifuge, channel: string, doc: Y.Doc, options?: { awareness?: Awareness; codec?: Codec; window?: number; fastMs?: number });
    readonly channel: string;
    readonly doc: Y.Doc;
    readonly awareness: Awareness;
    synced: boolean;
    on(event: "synced" | "sync", listener: (synced: boolean) => void): void;
    on(event: "error", listener: (error: { code?: number; message?: string }) => void): void;
    destroy(): void;
  }
}
