// Type declarations for the Herald SDK's full build (herald.js, `@herald/sdk`,
// and what Herald serves at /sdk/herald.js): the core and the renderer.

import type { ConnectOptions as CoreOptions, HeraldClient, View } from './herald-core.js';
import type { Labels } from './herald-render.js';

export * from './herald-core.js';
export { DomRenderer, renderPreview, STYLESHEET } from './herald-render.js';
export type { Labels, PreviewHandle, PreviewOptions, RendererOptions } from './herald-render.js';

export interface ConnectOptions extends CoreOptions {
  /** Draw messages (default true where there is a document). false: the app draws them (listen to 'message') and calls ack(). */
  render?: boolean;
  /** Accessible names of the SDK's own controls. */
  labels?: Labels;
  /** How long a toast without actions stays (ms, default 6000; 0: until closed). */
  toastMs?: number;
  /** Where the SDK's overlay root goes (default document.body). */
  container?: Element;
}

/** The view Herald.connect uses: options.view, else the DOM renderer unless render is false or there is no document. */
export declare function defaultView(options?: ConnectOptions): View | ((client: HeraldClient) => View) | null;

/** Connects and draws: `Herald.connect(options)`. */
export declare const Herald: {
  connect(options: ConnectOptions): HeraldClient;
};
export default Herald;
