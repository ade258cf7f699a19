import type { Duplex } from 'node:stream';
import type { Host } from '../../core';

/**
 * A small client of strongSwan's vici protocol over a stream the Host opens (a unix socket on
 * the main server, an SSH forward on a node). Why not parse `swanctl --list-sas --raw`: that
 * text puts identities unquoted between spaces and braces, and the IKE identity is chosen by
 * the client, so a crafted one could pass for another user's fields. The binary format has
 * explicit lengths.
 *
 * Wire format (strongSwan `src/libcharon/plugins/vici/README.md`): every packet is a 32-bit
 * big-endian length, a type byte, for named types a length-prefixed name, then a message of
 * elements (section start/end, key-value, list start/item/end).
 */
export type ViciValue = string | string[] | ViciMessage;
export interface ViciMessage {
  [key: string]: ViciValue;
}

const CMD_REQUEST = 0;
const CMD_RESPONSE = 1;
const CMD_UNKNOWN = 2;
const EVENT_REGISTER = 3;
const EVENT_UNREGISTER = 4;
const EVENT_CONFIRM = 5;
const EVENT_UNKNOWN = 6;
const EVENT = 7;

const SECTION_START = 1;
const SECTION_END = 2;
const KEY_VALUE = 3;
const LIST_START = 4;
const LIST_ITEM = 5;
const LIST_END = 6;

/** The longest packet accepted from charon; a list-sas event of one SA is a few KB. */
const MAX_PACKET = 4 * 1024 * 1024;

export function encodeMessage(msg: ViciMessage): Buffer {
  const parts: Buffer[] = [];
  const name = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    if (b.length > 255) throw new Error(`vici name too long: ${s.slice(0, 40)}`);
    return Buffer.concat([Buffer.from([b.length]), b]);
  };
  const value = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    if (b.length > 65535) throw new Error('vici value too long');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    return Buffer.concat([len, b]);
  };
  const walk = (m: ViciMessage) => {
    for (const [k, v] of Object.entries(m)) {
      if (typeof v === 'string') parts.push(Buffer.from([KEY_VALUE]), name(k), value(v));
      else if (Array.isArray(v)) {
        parts.push(Buffer.from([LIST_START]), name(k));
        for (const item of v) parts.push(Buffer.from([LIST_ITEM]), value(item));
        parts.push(Buffer.from([LIST_END]));
      } else {
        parts.push(Buffer.from([SECTION_START]), name(k));
        walk(v);
        parts.push(Buffer.from([SECTION_END]));
      }
    }
  };
  walk(msg);
  return Buffer.concat(parts);
}

/** Decodes a message; throws on anything malformed (a truncated element, an unbalanced section). */
export function decodeMessage(buf: Buffer): ViciMessage {
  const root: ViciMessage = {};
  const stack: ViciMessage[] = [root];
  let list: string[] | null = null;
  let i = 0;
  const need = (n: number) => {
    if (i + n > buf.length) throw new Error('vici message truncated');
  };
  const readName = () => {
    need(1);
    const len = buf[i++]!;
    need(len);
    const s = buf.toString('utf8', i, i + len);
    i += len;
    return s;
  };
  const readValue = () => {
    need(2);
    const len = buf.readUInt16BE(i);
    i += 2;
    need(len);
    const s = buf.toString('utf8', i, i + len);
    i += len;
    return s;
  };
  while (i < buf.length) {
    const type = buf[i++];
    const top = stack[stack.length - 1]!;
    if (list && type !== LIST_ITEM && type !== LIST_END) throw new Error('vici list not closed');
    switch (type) {
      case SECTION_START: {
        const sec: ViciMessage = {};
        top[readName()] = sec;
        stack.push(sec);
        break;
      }
      case SECTION_END:
        if (stack.length < 2) throw new Error('vici section end without start');
        stack.pop();
        break;
      case KEY_VALUE: {
        const k = readName();
        top[k] = readValue();
        break;
      }
      case LIST_START:
        list = [];
        top[readName()] = list;
        break;
      case LIST_ITEM:
        if (!list) throw new Error('vici list item outside a list');
        list.push(readValue());
        break;
      case LIST_END:
        if (!list) throw new Error('vici list end outside a list');
        list = null;
        break;
      default:
        throw new Error(`vici element type ${type} unknown`);
    }
  }
  if (stack.length !== 1 || list) throw new Error('vici message not closed');
  return root;
}

function packet(type: number, name: string | null, msg?: ViciMessage): Buffer {
  const head: number[] = [type];
  const nameBuf = name === null ? Buffer.alloc(0) : Buffer.from(name, 'utf8');
  if (name !== null) head.push(nameBuf.length);
  const body = Buffer.concat([Buffer.from(head), nameBuf, msg ? encodeMessage(msg) : Buffer.alloc(0)]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

interface Incoming {
  type: number;
  name?: string;
  msg?: ViciMessage;
}

/**
 * One vici connection. Requests are answered in order; events the connection registered for
 * go to `onEvent`. Every request is bounded by `timeoutMs`.
 */
export class ViciSession {
  private buffer = Buffer.alloc(0);
  private readonly waiters: Array<{ resolve: (p: Incoming) => void; reject: (e: Error) => void }> = [];
  private closedError: Error | null = null;
  onEvent: (name: string, msg: ViciMessage) => void = () => undefined;
  onClose: (err: Error) => void = () => undefined;

  private constructor(private readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => this.receive(chunk));
    const fail = (err: Error) => this.fail(err);
    stream.on('error', fail);
    stream.on('close', () => fail(new Error('vici connection closed')));
    stream.on('end', () => fail(new Error('vici connection ended')));
  }

  static async open(host: Host, socketPath: string): Promise<ViciSession> {
    return new ViciSession(await host.openStream({ path: socketPath }));
  }

  close(): void {
    this.stream.destroy();
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  /** A command; events named in `streamed` (list-sa for list-sas) are collected and returned beside the response. */
  async request(command: string, msg: ViciMessage = {}, timeoutMs = 10_000, streamed?: string): Promise<{ response: ViciMessage; events: ViciMessage[] }> {
    const events: ViciMessage[] = [];
    const prev = this.onEvent;
    if (streamed) {
      await this.register(streamed, timeoutMs);
      this.onEvent = (name, m) => (name === streamed ? events.push(m) : prev(name, m));
    }
    try {
      this.stream.write(packet(CMD_REQUEST, command, msg));
      const reply = await this.next(timeoutMs, `vici ${command}`);
      if (reply.type === CMD_UNKNOWN) throw new Error(`vici command ${command} unknown to charon`);
      if (reply.type !== CMD_RESPONSE) throw new Error(`vici ${command}: unexpected packet type ${reply.type}`);
      return { response: reply.msg ?? {}, events };
    } finally {
      if (streamed) {
        this.onEvent = prev;
        await this.unregister(streamed, timeoutMs).catch(() => undefined);
      }
    }
  }

  async register(event: string, timeoutMs = 10_000): Promise<void> {
    this.stream.write(packet(EVENT_REGISTER, event));
    const reply = await this.next(timeoutMs, `vici register ${event}`);
    if (reply.type === EVENT_UNKNOWN) throw new Error(`vici event ${event} unknown to charon`);
    if (reply.type !== EVENT_CONFIRM) throw new Error(`vici register ${event}: unexpected packet type ${reply.type}`);
  }

  private async unregister(event: string, timeoutMs: number): Promise<void> {
    this.stream.write(packet(EVENT_UNREGISTER, event));
    await this.next(timeoutMs, `vici unregister ${event}`);
  }

  private next(timeoutMs: number, what: string): Promise<Incoming> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (p: Incoming) => {
          clearTimeout(timer);
          resolve(p);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        // The answer may still arrive and would be taken for the next request's: drop the connection.
        this.fail(new Error(`${what}: no answer within ${timeoutMs} ms`));
        reject(new Error(`${what}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  private fail(err: Error): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
    this.stream.destroy();
    this.onClose(err);
  }

  private receive(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    while (this.buffer.length >= 4) {
      const len = this.buffer.readUInt32BE(0);
      if (len > MAX_PACKET || len < 1) return this.fail(new Error(`vici packet of ${len} bytes refused`));
      if (this.buffer.length < 4 + len) return;
      const body = this.buffer.subarray(4, 4 + len);
      this.buffer = this.buffer.subarray(4 + len);
      let p: Incoming;
      try {
        p = parsePacket(body);
      } catch (e) {
        return this.fail(e as Error);
      }
      if (p.type === EVENT) this.onEvent(p.name!, p.msg ?? {});
      else this.waiters.shift()?.resolve(p);
    }
  }
}

function parsePacket(body: Buffer): Incoming {
  const type = body[0]!;
  let i = 1;
  let name: string | undefined;
  if (type === CMD_REQUEST || type === EVENT_REGISTER || type === EVENT_UNREGISTER || type === EVENT) {
    const len = body[i++];
    if (len === undefined || i + len > body.length) throw new Error('vici packet name truncated');
    name = body.toString('utf8', i, i + len);
    i += len;
  }
  const withMsg = type === CMD_REQUEST || type === CMD_RESPONSE || type === EVENT;
  return { type, ...(name !== undefined ? { name } : {}), ...(withMsg ? { msg: decodeMessage(body.subarray(i)) } : {}) };
}
