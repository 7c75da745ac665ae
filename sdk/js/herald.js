// Herald browser SDK, the full build: the connection core (herald-core.js)
// and the DOM renderer (herald-render.js) together, as Herald serves it at
// /sdk/herald.js. `Herald.connect(options)` draws every kind of message over
// the page unless `render: false`. ES module, no build step, no
// dependencies. See README.md.

import { HeraldClient } from './herald-core.js';
import { DomRenderer } from './herald-render.js';

export * from './herald-core.js';
export { DomRenderer, STYLESHEET, renderPreview } from './herald-render.js';

/**
 * The view Herald.connect uses: the DOM renderer when there is a document and
 * `render` is not false (options.container, labels, toastMs go to it).
 */
export function defaultView(options = {}) {
  if (options.view) return options.view;
  if (options.render === false || typeof document === 'undefined') return null;
  return (client) => new DomRenderer(client, { container: options.container, labels: options.labels, toastMs: options.toastMs });
}

/** Entry point: `Herald.connect(options)` returns a connected HeraldClient that draws its messages. */
export const Herald = Object.freeze({
  connect(options = {}) {
    return new HeraldClient({ ...options, view: defaultView(options) })._start();
  },
});

export default Herald;
