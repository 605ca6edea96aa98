import type { Config } from "../config";
import type { Connection } from "../connection";

export interface App {
  config: Config;
  conn: Connection;
  /** Go to a view by name (e.g. after signing in). */
  go(view: string): void;
  /** Sign in with a token (and, for demo tokens, a way to get the next one). */
  signIn(token: string, refresh: (() => Promise<string>) | null): void;
  signOut(message?: string): void;
}

export interface View {
  name: string;
  title: string;
  root: HTMLElement;
  /** Called when the view is shown. */
  shown?(): void;
}
