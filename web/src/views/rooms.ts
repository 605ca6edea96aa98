// Rooms: join one, see who is there and how they feel, the room's resonance over time, its patterns and
// questions, a chat beside it (chat:<room>) and the room's shared notes (notes:<room>, ./notes.ts).
import { clock, fill, fmt, h } from "../dom";
import { linePlot } from "../plot";
import { decode } from "../wire";
import type { PublicationContext, Subscription } from "../wire";
import { notesPanel } from "./notes";
import type { App, View } from "./view";

interface RoomPublication {
  type: "state" | "resonance" | "pattern" | "question";
  user?: string;
  state?: { valence: number; arousal: number; label: string | null };
  score?: number | null;
  agreement?: number | null;
  synchrony?: number | null;
  at?: number;
  kind?: string;
  strength?: number;
  text?: string;
}

export function roomsView(app: App): View {
  const name = h("input", { id: "room-name", type: "text", required: true, pattern: "[A-Za-z0-9_-]{1,64}", value: "lobby", "aria-describedby": "room-hint" });
  const join = h("button", { type: "submit", "data-testid": "join-room" }, "Join");
  const leave = h("button", { type: "button", disabled: true, onclick: () => void leaveRoom() }, "Leave");
  const status = h("p", { role: "status", "data-testid": "room-status" });
  const presence = h("ul", { class: "members", "data-testid": "presence", "aria-label": "Members" });
  const score = h("output", { class: "big", "data-testid": "resonance-score" }, "—");
  const scoreNote = h("span", { class: "note" });
  const plot = linePlot("Resonance over time", "score", "#6a3fa0", [0, 1]);
  const patterns = h("ul", { "data-testid": "patterns" });
  const questions = h("ul", { "data-testid": "room-questions" });
  const chatLog = h("ol", { class: "chat", "data-testid": "chat-log", "aria-live": "polite" });
  const chatText = h("input", { id: "chat-text", type: "text", maxlength: "500", autocomplete: "off" });
  const chatSend = h("button", { type: "submit" }, "Send");
  const notes = notesPanel(app);
  const body = h(
    "div",
    { hidden: true },
    h("h2", {}, "Members"),
    presence,
    h("h2", {}, "Resonance"),
    h("p", {}, score, " ", scoreNote),
    plot.figure,
    h("h2", {}, "Patterns"),
    patterns,
    h("h2", {}, "Questions for the room"),
    questions,
    h("h2", {}, "Chat"),
    chatLog,
    h("form", { class: "row", onsubmit: (e: Event) => void say(e) }, h("label", { for: "chat-text" }, "Message"), chatText, chatSend),
    notes.root,
  );

  const root = h(
    "section",
    { "aria-labelledby": "rooms-title" },
    h("h1", { id: "rooms-title", tabindex: "-1" }, "Rooms"),
    h("p", { class: "note", id: "room-hint" }, "A room compares its members' shared states and heart-rate trends. Share how you feel under Me first. Names: letters, digits, _ and -."),
    h("form", { class: "row", onsubmit: (e: Event) => void joinRoom(e) }, h("label", { for: "room-name" }, "Room"), name, join, leave),
    status,
    body,
  );

  let room: string | null = null;
  let sub: Subscription | null = null;
  let chat: Subscription | null = null;
  const members = new Map<string, string>(); // client → user
  const states = new Map<string, string>(); // user → text
  let scores: { t: number; v: number | null }[] = [];

  function renderMembers(): void {
    const users = [...new Set(members.values())].sort();
    fill(presence, ...users.map((u) => h("li", { "data-user": u }, h("strong", {}, u), states.has(u) ? ` — ${states.get(u)}` : "")));
  }

  function onPublication(ctx: PublicationContext): void {
    const p = decode<RoomPublication>(ctx.data);
    if (p.type === "state" && p.user && p.state) {
      states.set(p.user, `valence ${fmt(p.state.valence, 2)}, arousal ${fmt(p.state.arousal, 2)}${p.state.label ? `, ${p.state.label}` : ""}`);
      renderMembers();
    } else if (p.type === "resonance") {
      score.textContent = p.score != null ? p.score.toFixed(2) : "not defined";
      scoreNote.textContent = `agreement ${fmt(p.agreement, 2)}, synchrony ${fmt(p.synchrony, 2)}`;
      scores.push({ t: p.at ?? Date.now() / 1000, v: p.score ?? null });
      if (scores.length > 500) scores.shift();
      const t0 = scores[0].t;
      plot.set(scores.map((s) => s.t - t0), scores.map((s) => s.v));
    } else if (p.type === "pattern") {
      patterns.prepend(h("li", {}, `${clock(p.at ?? Date.now() / 1000)} ${p.kind} (strength ${fmt(p.strength, 2)})`));
    } else if (p.type === "question" && p.text) {
      questions.prepend(h("li", {}, p.text));
    }
  }

  async function joinRoom(event: Event): Promise<void> {
    event.preventDefault();
    const wanted = name.value.trim();
    if (room) await leaveRoom();
    try {
      const reply = await app.conn.rpc<{ channel: string; members: string[] }>("room.join", { room: wanted });
      room = wanted;
      members.clear();
      states.clear();
      scores = [];
      fill(patterns);
      fill(questions);
      fill(chatLog);
      score.textContent = "—";
      reply.members.forEach((u, i) => members.set(`joined-${i}`, u));
      sub = app.conn.channel(reply.channel, { joinLeave: true });
      sub.on("publication", onPublication);
      sub.on("join", (ctx) => {
        members.set(ctx.info.client, ctx.info.user);
        renderMembers();
      });
      sub.on("leave", (ctx) => {
        members.delete(ctx.info.client);
        renderMembers();
      });
      sub.on("subscribed", async () => {
        const current = await sub!.presence();
        members.clear();
        for (const [client, info] of Object.entries(current.clients)) members.set(client, info.user);
        renderMembers();
      });
      chat = app.conn.channel(`chat:${wanted}`);
      chat.on("publication", (ctx) => {
        const m = decode<{ text: string }>(ctx.data);
        chatLog.append(h("li", {}, h("strong", {}, ctx.info?.user ?? "server"), `: ${m.text}`));
      });
      notes.open(wanted);
      renderMembers();
      body.hidden = false;
      leave.disabled = false;
      status.textContent = `In room ${wanted}.`;
    } catch (e) {
      status.textContent = `Could not join: ${(e as Error).message}`;
    }
  }

  async function leaveRoom(): Promise<void> {
    if (!room) return;
    const old = room;
    room = null;
    for (const s of [sub, chat]) {
      if (s) {
        s.removeAllListeners();
        s.unsubscribe();
        app.conn.client?.removeSubscription(s);
      }
    }
    sub = chat = null;
    notes.close();
    await app.conn.rpc("room.leave", { room: old }).catch(() => {});
    body.hidden = true;
    leave.disabled = true;
    status.textContent = `Left room ${old}.`;
  }

  async function say(event: Event): Promise<void> {
    event.preventDefault();
    if (!room || !chatText.value.trim()) return;
    try {
      await app.conn.publish(`chat:${room}`, { text: chatText.value.trim() });
      chatText.value = "";
    } catch (e) {
      status.textContent = `Not sent: ${(e as Error).message}`;
    }
  }

  return { name: "rooms", title: "Rooms", root };
}
