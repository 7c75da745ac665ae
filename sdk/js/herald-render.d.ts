// Type declarations for the Herald renderer (herald-render.js, `@herald/sdk/render`):
// DOM overlays for a HeraldClient, and the same drawing as a preview.

import type { HeraldClient, Message, SlotName, View } from './herald-core.js';

export interface Labels {
  /** aria-label of the close button. Default "Dismiss". */
  dismiss?: string;
  /** The button of a require_ack message without actions. Default "OK". */
  ok?: string;
  /** Accessible name of a message without a title. Default "Message". */
  message?: string;
}
export interface RendererOptions {
  /** Where the overlay root goes (default document.body). */
  container?: Element;
  labels?: Labels;
  /** How long a toast without actions stays (ms, default 6000; 0: until closed). */
  toastMs?: number;
  document?: Document;
}

/** The DOM view: banners, modals, cards, toasts, tooltips and fullscreens over the page. */
export declare class DomRenderer implements View {
  constructor(host: Pick<HeraldClient, 'displayed' | 'click' | 'dismiss' | 'hide'>, options?: RendererOptions);
  /** The overlay root, once something was drawn. */
  readonly root: HTMLElement | null;
  show(msg: Message, slot?: SlotName): void;
  hide(msg: Message | string, why?: string): void;
  settle(): void;
  destroy(): void;
}

export interface PreviewOptions {
  /** Force a scheme; default: the page's prefers-color-scheme. */
  theme?: 'light' | 'dark';
  /** Size of the preview area in px; default: the container's (min-height 220 px). */
  width?: number;
  height?: number;
  labels?: Labels;
  /** The preview area's accessible name (role group). Default "Message preview". */
  label?: string;
  /** A button of the message was pressed (nothing is sent anywhere). */
  onAction?: (action: { id: string; label?: string; url?: string }, msg: Message) => void;
  /** Its close control was pressed. */
  onDismiss?: (msg: Message) => void;
}

export interface PreviewHandle {
  /** The preview's root element, inside the container. */
  readonly root: HTMLElement;
  /** Draws another message (or the same, edited) in its place. */
  update(msg: Partial<Message> & { kind: Message['kind'] }): void;
  /** Removes the preview. */
  destroy(): void;
}

/**
 * Draws one message into `container` with the live drawing code, without a
 * connection (SPEC §10.6): positioned inside the container, no focus moved
 * or trapped, no page-wide listeners, no acks. `msg` needs a kind; id and
 * priority default to 'preview' and 'normal'.
 */
export declare function renderPreview(container: Element, msg: Partial<Message> & { kind: Message['kind'] }, options?: PreviewOptions): PreviewHandle;

/** The renderer's stylesheet (scoped to .herald-root). */
export declare const STYLESHEET: string;
