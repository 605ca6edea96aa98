// A room's shared notes (notes:<room>): a text area bound to a Y.Text through the resonance-yjs
// provider (docs/protocol.md, "Shared documents"), and who is here with where their cursor is, from
// the document's awareness. Members of the room write; the server refuses anyone else (103).
import { JSON_BYTES, ResonanceYjsProvider } from "resonance-yjs";
import { Awareness } from "y-protocols/awareness";
import * as Y from "yjs";
import { fill, h } from "../dom";
import type { App } from "./view";

interface Peer {
  user?: { name?: string };
  cursor?: { anchor: unknown; head: unknown } | null;
}

const TYPING = "console-textarea"; // the origin of the text area's own edits

export interface NotesPanel {
  root: HTMLElement;
  open(room: string): void;
  close(): void;
}

/** Where `text` and `next` differ: [start, removed, inserted] (one splice, as typing and pasting make). */
export function splice(text: string, next: string): [number, number, string] {
  let start = 0;
  const shorter = Math.min(text.length, next.length);
  while (start < shorter && text[start] === next[start]) start++;
  let end = 0;
  while (end < shorter - start && text[text.length - 1 - end] === next[next.length - 1 - end]) end++;
  return [start, text.length - start - end, next.slice(start, next.length - end)];
}

/** "line 2, column 5" of an index in a text. */
function lineColumn(text: string, index: number): string {
  const before = text.slice(0, index).split("\n");
  return `line ${before.length}, column ${before[before.length - 1].length + 1}`;
}

export function notesPanel(app: App): NotesPanel {
  const area = h("textarea", { id: "notes-text", rows: "8", "data-testid": "notes", disabled: true, spellcheck: "false" });
  const state = h("p", { class: "note", role: "status", "data-testid": "notes-state" }, "Not open.");
  const peers = h("ul", { class: "members", "data-testid": "notes-peers", "aria-label": "Editing the notes" });
  const root = h(
    "div",
    {},
    h("h2", {}, h("label", { for: "notes-text" }, "Shared notes")),
    h("p", { class: "note" }, "Everyone in the room edits the same notes; changes merge as you type."),
    area,
    state,
    peers,
  );

  let provider: ResonanceYjsProvider | null = null;
  let doc: Y.Doc | null = null;
  let text: Y.Text | null = null;

  function renderPeers(): void {
    if (!provider || !text || !doc) return fill(peers);
    const current = text.toString();
    const items = [...provider.awareness.getStates().entries()]
      .sort(([a], [b]) => a - b)
      .map(([id, raw]) => {
        const peer = raw as Peer;
        const name = peer.user?.name ?? "someone";
        let where = "";
        if (peer.cursor && doc) {
          const at = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(peer.cursor.head), doc);
          if (at) where = ` — at ${lineColumn(current, at.index)}`;
        }
        return h("li", { "data-user": name, "data-me": id === doc!.clientID ? "true" : null }, h("strong", {}, name), id === doc!.clientID ? " (you)" : "", where);
      });
    fill(peers, ...items);
  }

  let selection: [Y.RelativePosition, Y.RelativePosition] | null = null; // this person's, in the text

  function shareCursor(): void {
    if (!provider || !text) return;
    selection = [
      Y.createRelativePositionFromTypeIndex(text, area.selectionStart),
      Y.createRelativePositionFromTypeIndex(text, area.selectionEnd),
    ];
    if (document.activeElement !== area) return;
    const [anchor, head] = selection.map((p) => Y.relativePositionToJSON(p));
    provider.awareness.setLocalStateField("cursor", { anchor, head });
  }

  area.addEventListener("input", () => {
    if (!text || !doc) return;
    const [start, removed, inserted] = splice(text.toString(), area.value);
    doc.transact(() => {
      if (removed) text!.delete(start, removed);
      if (inserted) text!.insert(start, inserted);
    }, TYPING);
    shareCursor();
  });
  for (const event of ["select", "keyup", "click", "focus"]) area.addEventListener(event, shareCursor);
  area.addEventListener("blur", () => provider?.awareness.setLocalStateField("cursor", null));

  function open(room: string): void {
    close();
    doc = new Y.Doc();
    text = doc.getText("notes");
    const awareness = new Awareness(doc);
    awareness.setLocalStateField("user", { name: app.conn.user ?? "anonymous" });
    // The protobuf build sends data as JSON bytes (wire.ts): the provider does the same.
    const codec = __PROTOBUF__ ? { codec: JSON_BYTES } : {};
    provider = new ResonanceYjsProvider(app.conn.client!, `notes:${room}`, doc, { awareness, ...codec });
    state.textContent = "Loading the notes…";
    provider.on("synced", (synced) => {
      area.disabled = !synced;
      state.textContent = synced ? "Up to date." : "Reconnecting: edits wait and merge when back.";
      if (synced) area.dataset.synced = "true";
      else delete area.dataset.synced;
    });
    provider.on("error", (error) => {
      state.textContent = `Not saved: ${error.message ?? String(error)}${error.code ? ` (${error.code})` : ""}`;
    });
    text.observe((event) => {
      if (event.transaction.origin === TYPING) return renderPeers();
      // Someone else's edit: keep this person's selection where it was in the text around it.
      area.value = text!.toString();
      if (selection && document.activeElement === area) {
        const [a, b] = selection.map((p) => Y.createAbsolutePositionFromRelativePosition(p, doc!));
        if (a && b) area.setSelectionRange(a.index, b.index);
      }
      renderPeers();
    });
    awareness.on("change", renderPeers);
    area.value = "";
    renderPeers();
  }

  function close(): void {
    provider?.destroy();
    doc?.destroy();
    provider = null;
    doc = null;
    selection = null;
    text = null;
    area.value = "";
    area.disabled = true;
    delete area.dataset.synced;
    state.textContent = "Not open.";
    fill(peers);
  }

  return { root, open, close };
}
