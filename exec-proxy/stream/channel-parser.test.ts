import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChannelParser } from './channel-parser.ts';
import { StreamError } from './errors.ts';

const V5 = { encoding: 'binary', version: 5 } as const;
const V4 = { encoding: 'binary', version: 4 } as const;
const B64 = { encoding: 'base64', version: 1 } as const;
const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');

test('valid frames parse into typed data and close frames', () => {
  const cases = [
    { name: 'stdin bytes', proto: V5, data: hex('00 68 69'), binary: true, want: { type: 'data', channel: 0, payload: 'hi' } },
    { name: 'empty initial stdout frame', proto: V5, data: hex('01'), binary: true, want: { type: 'data', channel: 1, payload: '' } },
    { name: 'resize', proto: V5, data: Buffer.concat([hex('04'), Buffer.from('{"Width":80,"Height":24}')]), binary: true, want: { type: 'data', channel: 4, payload: '{"Width":80,"Height":24}' } },
    { name: 'v5 close of stdin', proto: V5, data: hex('ff 00'), binary: true, want: { type: 'close', channel: 0 } },
    { name: 'base64 stdout', proto: B64, data: Buffer.from('1aGk='), binary: false, want: { type: 'data', channel: 1, payload: 'hi' } },
  ];
  for (const c of cases) {
    const f = new ChannelParser(c.proto).parse(c.data, c.binary);
    assert.equal(f.type, c.want.type, c.name);
    assert.equal(f.channel, c.want.channel, c.name);
    if (f.type === 'data') assert.equal(f.payload.toString(), c.want.payload, c.name);
  }
});

test('protocol violations throw stable codes and leave the parser failed', () => {
  const cases = [
    { name: 'text frame on binary protocol', proto: V5, data: Buffer.from('\x00hi'), binary: false, code: 'STREAM_ERR_TEXT_FRAME', close: 1003 },
    { name: 'unknown channel 7', proto: V5, data: hex('07 00'), binary: true, code: 'STREAM_ERR_UNKNOWN_CHANNEL', close: 1002 },
    { name: 'message without channel byte', proto: V5, data: hex(''), binary: true, code: 'STREAM_ERR_EMPTY_FRAME', close: 1002 },
    { name: 'close signal with extra bytes', proto: V5, data: hex('ff 00 00'), binary: true, code: 'STREAM_ERR_BAD_CLOSE_SIGNAL', close: 1002 },
    { name: 'close signal on v4 is an unknown channel', proto: V4, data: hex('ff 00'), binary: true, code: 'STREAM_ERR_UNKNOWN_CHANNEL', close: 1002 },
    { name: 'base64 payload that is not base64', proto: B64, data: Buffer.from('0!!!'), binary: false, code: 'STREAM_ERR_BAD_BASE64', close: 1003 },
    { name: 'base64 channel that is not a digit', proto: B64, data: Buffer.from('xaGk='), binary: false, code: 'STREAM_ERR_UNKNOWN_CHANNEL', close: 1002 },
  ];
  for (const c of cases) {
    const p = new ChannelParser(c.proto);
    assert.throws(() => p.parse(c.data, c.binary), (e: unknown) => e instanceof StreamError && e.code === c.code && e.closeCode === c.close, c.name);
    assert.equal(p.state, 'FAILED', c.name);
    assert.throws(() => p.parse(hex('00 61'), true), StreamError, `${c.name}: stays failed`);
  }
});

test('a frame larger than maxFrameBytes is rejected with 1009', () => {
  const p = new ChannelParser(V5, { maxFrameBytes: 4 });
  assert.equal(p.parse(hex('01 01020304'), true).type, 'data');
  assert.throws(() => p.parse(hex('01 0102030405'), true), (e: unknown) => e instanceof StreamError && e.code === 'STREAM_ERR_FRAME_TOO_LARGE' && e.closeCode === 1009);
});

test('data on a channel after its close signal is a violation', () => {
  const p = new ChannelParser(V5);
  p.parse(hex('ff 00'), true);
  assert.equal(p.isClosed(0), true);
  assert.throws(() => p.parse(hex('00 61'), true), (e: unknown) => e instanceof StreamError && e.code === 'STREAM_ERR_DATA_AFTER_CLOSE');
});

test('bad limits are refused at construction', () => {
  assert.throws(() => new ChannelParser(V5, { maxFrameBytes: 0 }), TypeError);
  assert.throws(() => new ChannelParser(V5, { maxChannel: 255 }), TypeError);
});

test('with acceptText, a text message on a binary protocol is the same channel data (as the API server reads it)', () => {
  const f = new ChannelParser(V4, { acceptText: true }).parse(Buffer.from('\x00hi'), false);
  assert.deepEqual(f.type === 'data' ? [f.channel, f.payload.toString()] : [], [0, 'hi']);
});
