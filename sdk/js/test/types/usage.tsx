// Compiled by types.test.mjs (tsc --noEmit, strict): the declarations match
// how the README says the packages are used.
import { Herald, renderPreview, type Message } from '@herald/sdk';
import { Herald as Core, HeraldClient, type View, refreshDelay } from '@herald/sdk/core';
import { DomRenderer } from '@herald/sdk/render';
import { HeraldProvider, useHerald, useHeraldMessages, useHeraldStatus, type HeraldRendererProps } from '@herald/react';
// Any WebSocket class: the ws package's in Node 20, the global one elsewhere.
class WebSocket {}

const full = Herald.connect({ url: 'https://herald.example.com', getToken: async () => 'jwt', labels: { dismiss: 'Close' }, toastMs: 0 });
full.on('message', (m: Message) => m.kind);
full.on('auth', ({ exp }) => exp);
full.track('page_view', { path: '/pricing' });

const view: View = { show: (msg, slot) => console.log(msg.id, slot), hide: (msg, why) => console.log(msg.id, why) };
const core: HeraldClient = Core.connect({ url: 'wss://herald.example.com', getToken: () => ({ token: 'jwt' }), WebSocket, view, autoPageView: false });
core.click('id', 'action');
core.dismiss('id');
core.displayed('id');
const exp: number | null = core.tokenExp;
refreshDelay(60_000);
new DomRenderer(core, { container: document.body });

const handle = renderPreview(document.body, { kind: 'modal', title: 'Preview' }, { theme: 'dark', width: 375, onAction: (a) => a.id });
handle.update({ kind: 'banner', title: 'Now a banner', dismissible: false });
handle.destroy();

function MyModal({ message, click, dismiss, dismissible }: HeraldRendererProps) {
  return (
    <div role="dialog">
      {message.title}
      <button onClick={() => click('ok')}>OK</button>
      {dismissible && <button onClick={dismiss}>×</button>}
    </div>
  );
}

function Toasts() {
  const items = useHeraldMessages({ kind: ['toast'] });
  const { state } = useHeraldStatus();
  const { track } = useHerald();
  return (
    <ul data-state={state} onClick={() => track('x')}>
      {items.map((i) => (
        <li key={i.message.id}>{i.message.title}</li>
      ))}
    </ul>
  );
}

export const app = (
  <HeraldProvider url="https://herald.example.com" getToken={() => 'jwt'} renderers={{ modal: MyModal }} ownKinds="toast">
    <Toasts />
  </HeraldProvider>
);
void exp;
