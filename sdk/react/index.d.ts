// Type declarations for @herald/react.

import type { ComponentType, ReactNode } from 'react';
import type { AckStatus, ConnectOptions, HeraldClient, Kind, Message, StateChange } from '@herald/sdk';

/** What a component of `renderers` receives for the message it draws. */
export interface HeraldRendererProps {
  message: Message;
  /** The user pressed the action with this id: acked clicked, taken off screen, its url followed. */
  click(actionId: string): void;
  /** The user closed it: acked dismissed, taken off screen (refused for dismissible: false). */
  dismiss(): void;
  /** May it show a close control and close on Escape? false for require_ack and dismissible: false. */
  dismissible: boolean;
}

/** A message the app draws, as useHeraldMessages returns it. */
export interface HeraldItem extends HeraldRendererProps {
  kind: Kind;
  /** Acks displayed (once); done for you when the item was rendered while the tab is visible. */
  displayed(): void;
}

export interface HeraldProviderProps extends ConnectOptions {
  children?: ReactNode;
  /** Components for the kinds the app draws itself, e.g. { modal: MyModal, custom: MyWidget }. */
  renderers?: Partial<Record<Kind, ComponentType<HeraldRendererProps>>>;
  /** Kinds the app draws with useHeraldMessages instead of components. */
  ownKinds?: Kind | Kind[];
}

/** Connects to Herald once, when it mounts (a new `key` connects again with new options). */
export declare function HeraldProvider(props: HeraldProviderProps): ReactNode;

/** The app-drawn messages on screen now (one per slot; every active custom one), filtered by kind. */
export declare function useHeraldMessages(options?: { kind?: Kind | Kind[] }): readonly HeraldItem[];

/** The connection's state, updated on every change. */
export declare function useHeraldStatus(): StateChange & { sid?: string | null; user?: string | null };

/** The client (null until the provider mounted), and track/ack that wait for it. */
export declare function useHerald(): {
  client: HeraldClient | null;
  track(name: string, props?: Record<string, unknown>): void;
  ack(id: string, status: AckStatus, action?: string): void;
};
