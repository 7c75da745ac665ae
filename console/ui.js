// Shared pieces of the console's views: labelled fields with their error,
// cards, the loading / empty / error / not-available states, a confirm
// dialog (the native <dialog>: focus kept inside, Escape cancels), and the
// hook that loads one API answer.

import { html, render, useCallback, useEffect, useRef, useState } from './vendor/preact-htm.js';
import { NotAvailable } from './api.js';

export { html };

let ids = 0;
/** A stable, unique element id for one component instance. */
export function useId(prefix = 'f') {
  const ref = useRef(null);
  if (!ref.current) ref.current = `${prefix}-${++ids}`;
  return ref.current;
}

const describedBy = (...parts) => parts.filter(Boolean).join(' ') || undefined;

/** A text input (or `textarea` when `multiline`) with its label, hint and inline error. */
export function Text({ label, value, onInput, error, hint, multiline, type = 'text', id, mono, required, ...rest }) {
  const auto = useId('t');
  const fid = id || auto;
  const tag = multiline ? 'textarea' : 'input';
  return html`<div class=${`field${error ? ' has-error' : ''}`}>
    <label for=${fid}>${label}${required ? html`<span class="req" aria-hidden="true"> *</span>` : null}</label>
    <${tag}
      id=${fid}
      class=${mono ? 'mono' : ''}
      type=${multiline ? undefined : type}
      value=${value ?? ''}
      onInput=${(e) => onInput(e.currentTarget.value)}
      aria-invalid=${error ? 'true' : undefined}
      aria-required=${required ? 'true' : undefined}
      aria-describedby=${describedBy(hint && `${fid}-hint`, error && `${fid}-err`)}
      rows=${multiline ? rest.rows || 3 : undefined}
      ...${rest}
    />
    ${hint ? html`<p class="hint" id=${`${fid}-hint`}>${hint}</p>` : null}
    ${error ? html`<p class="error" id=${`${fid}-err`} role="alert">${error}</p>` : null}
  </div>`;
}

/** A select with its label; `options` are [value, label] pairs. */
export function Select({ label, value, onChange, options, error, hint, id }) {
  const auto = useId('s');
  const fid = id || auto;
  return html`<div class=${`field${error ? ' has-error' : ''}`}>
    <label for=${fid}>${label}</label>
    <select id=${fid} value=${value} onChange=${(e) => onChange(e.currentTarget.value)} aria-invalid=${error ? 'true' : undefined}
      aria-describedby=${describedBy(hint && `${fid}-hint`, error && `${fid}-err`)}>
      ${options.map(([v, l]) => html`<option value=${v} selected=${v === value}>${l}</option>`)}
    </select>
    ${hint ? html`<p class="hint" id=${`${fid}-hint`}>${hint}</p>` : null}
    ${error ? html`<p class="error" id=${`${fid}-err`} role="alert">${error}</p>` : null}
  </div>`;
}

/** A checkbox with its label (and hint). */
export function Check({ label, checked, onChange, hint, id }) {
  const auto = useId('c');
  const fid = id || auto;
  return html`<div class="check">
    <input type="checkbox" id=${fid} checked=${!!checked} onChange=${(e) => onChange(e.currentTarget.checked)}
      aria-describedby=${hint ? `${fid}-hint` : undefined} />
    <label for=${fid}>${label}</label>
    ${hint ? html`<p class="hint" id=${`${fid}-hint`}>${hint}</p>` : null}
  </div>`;
}

/** A segmented choice (radio group) with a visible legend. */
export function Segmented({ legend, value, onChange, options, name }) {
  const auto = useId('g');
  return html`<fieldset class="segmented">
    <legend>${legend}</legend>
    <div class="seg-row">
      ${options.map(
        ([v, l]) => html`<label class=${`seg${v === value ? ' on' : ''}`}>
          <input type="radio" name=${name || auto} value=${v} checked=${v === value} onChange=${() => onChange(v)} />
          <span>${l}</span>
        </label>`,
      )}
    </div>
  </fieldset>`;
}

export function Card({ title, sub, actions, children, class: cls = '', labelledBy }) {
  const hid = useId('card');
  return html`<section class=${`card ${cls}`} aria-labelledby=${title ? labelledBy || hid : undefined}>
    ${title
      ? html`<header class="card-head">
          <div><h2 id=${labelledBy || hid}>${title}</h2>${sub ? html`<p class="sub">${sub}</p>` : null}</div>
          ${actions ? html`<div class="card-actions">${actions}</div>` : null}
        </header>`
      : null}
    ${children}
  </section>`;
}

/** What a view shows instead of data: loading, empty, an error, or a route this node lacks. */
export function StateBox({ kind, title, children, retry }) {
  const icon = { loading: '', empty: '○', error: '!', na: 'i' }[kind];
  return html`<div class=${`state state-${kind}`} role=${kind === 'error' ? 'alert' : 'status'} aria-busy=${kind === 'loading' ? 'true' : undefined}>
    ${kind === 'loading' ? html`<span class="spinner" aria-hidden="true"></span>` : html`<span class="state-icon" aria-hidden="true">${icon}</span>`}
    <div>
      <p class="state-title">${title}</p>
      ${children ? html`<p class="state-body">${children}</p>` : null}
      ${retry ? html`<button class="btn btn-quiet" onClick=${retry}>Try again</button>` : null}
    </div>
  </div>`;
}

/** The state for an error: a route missing on this node gets its own, calmer one. */
export function ErrorState({ error, what, retry }) {
  if (error instanceof NotAvailable) {
    return html`<${StateBox} kind="na" title=${`${what} is not available on this node`}>
      This node's API has no such route yet (it answered ${error.status}). Upgrade the node to a build that has it.
    </${StateBox}>`;
  }
  return html`<${StateBox} kind="error" title=${`Could not load ${what.toLowerCase()}`} retry=${retry}>${error.message}</${StateBox}>`;
}

/**
 * Loads `fn()` (an API call) when `deps` change, and every `every` ms when
 * given. {data, error, loading, reload}.
 */
export function useApi(fn, deps, every) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const seq = useRef(0);
  const load = useCallback(async () => {
    const mine = ++seq.current;
    try {
      const data = await fn();
      if (mine === seq.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === seq.current) setState((s) => ({ data: s.data, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    setState((s) => ({ ...s, loading: true }));
    load();
    if (!every) return () => seq.current++;
    const t = setInterval(load, every);
    return () => {
      clearInterval(t);
      seq.current++;
    };
  }, [load, every]);
  return { ...state, reload: load };
}

/**
 * Asks before a destructive action. Resolves true when confirmed. The
 * dialog is the browser's modal <dialog>: focus moves into it, stays there,
 * and returns to where it was; Escape cancels.
 */
export function confirmDialog({ title, body, confirm = 'Confirm', danger = true }) {
  return new Promise((resolve) => {
    const host = document.createElement('div');
    document.body.appendChild(host);
    const back = document.activeElement;
    const done = (ok) => {
      render(null, host);
      host.remove();
      if (back && back.isConnected) back.focus();
      resolve(ok);
    };
    const Dialog = () => {
      const ref = useRef(null);
      useEffect(() => {
        ref.current.showModal();
        ref.current.querySelector('.btn-cancel').focus();
      }, []);
      return html`<dialog ref=${ref} class="confirm" aria-labelledby="confirm-title" aria-describedby="confirm-body"
        onCancel=${(e) => {
          e.preventDefault();
          done(false);
        }}>
        <h2 id="confirm-title">${title}</h2>
        <p id="confirm-body">${body}</p>
        <div class="confirm-actions">
          <button class="btn btn-cancel" onClick=${() => done(false)}>Cancel</button>
          <button class=${`btn ${danger ? 'btn-danger' : 'btn-primary'}`} onClick=${() => done(true)}>${confirm}</button>
        </div>
      </dialog>`;
    };
    render(html`<${Dialog} />`, host);
  });
}

export const fmt = {
  n: (v) => (v == null ? '–' : Number(v).toLocaleString('en-US')),
  pct: (v) => (v == null ? '–' : `${(v * 100).toFixed(1)}%`),
  pp: (v) => (v == null ? '–' : `${v >= 0 ? '+' : '−'}${Math.abs(v * 100).toFixed(1)} pp`),
  time: (ms) => (ms ? new Date(ms).toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' }) : '–'),
  ago: (ms) => {
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 60) return `${Math.max(s, 0)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return fmt.time(ms);
  },
};

/** A polite live region line under a form: what the last action did. */
export function Outcome({ outcome }) {
  if (!outcome) return html`<div class="outcome" role="status" aria-live="polite"></div>`;
  return html`<div class=${`outcome outcome-${outcome.ok ? 'ok' : 'bad'}`} role="status" aria-live="polite">${outcome.text}</div>`;
}

/** A view: its heading (focused when the view opens), its line of help, its content. */
export function Page({ title, sub, children, actions }) {
  return html`<div class="page">
    <header class="page-head">
      <div><h1 id="page-title" tabindex="-1">${title}</h1>${sub ? html`<p class="sub">${sub}</p>` : null}</div>
      ${actions ? html`<div class="page-actions">${actions}</div>` : null}
    </header>
    ${children}
  </div>`;
}

