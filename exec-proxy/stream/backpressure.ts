/**
 * Backpressure of one relayed session: each side (client, upstream) is paused
 * while any reason holds — the other leg's send buffer is above the high
 * water mark, the recording has fallen behind, or the upstream is not open
 * yet — and resumed when the last reason goes.
 */
import { WebSocket } from 'ws';
import type { SessionRecorder } from './recorder.ts';

/** Send buffer bounds (bytes): pause the source above HIGH_WATER, resume it below LOW_WATER. */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;

/** Which leg a message came from. */
export type Side = 'client' | 'upstream';

/** Pause reasons per side, and sends that apply them. */
export class Backpressure {
  readonly #client: WebSocket;
  #upstream: WebSocket | undefined;
  readonly #paused = { client: new Set<string>(), upstream: new Set<string>() };

  constructor(client: WebSocket) {
    this.#client = client;
  }

  /** The upstream leg, once it exists. */
  set upstream(ws: WebSocket) {
    this.#upstream = ws;
  }

  pause(side: Side, reason: string): void {
    const set = this.#paused[side];
    if (set.size === 0) this.#ws(side)?.pause();
    set.add(reason);
  }

  resume(side: Side, reason: string): void {
    const set = this.#paused[side];
    if (!set.delete(reason)) return;
    if (set.size === 0) this.#ws(side)?.resume();
  }

  /** Sends to `dst`, pausing `srcSide` while `dst` is backed up. */
  send(dst: WebSocket, srcSide: Side, data: Buffer | string, binary: boolean): void {
    if (dst.readyState !== WebSocket.OPEN) return;
    const reason = `backpressure`;
    dst.send(data, { binary }, () => {
      if (dst.bufferedAmount <= LOW_WATER) this.resume(srcSide, reason);
    });
    if (dst.bufferedAmount > HIGH_WATER) this.pause(srcSide, reason);
  }

  /** Pauses `side` until the recorder has caught up, if it is congested. */
  checkRecorder(side: Side, recorder: SessionRecorder): void {
    if (!recorder.congested) return;
    this.pause(side, 'recording');
    void recorder.drained().then(() => this.resume(side, 'recording'));
  }

  #ws(side: Side): WebSocket | undefined {
    return side === 'client' ? this.#client : this.#upstream;
  }
}
