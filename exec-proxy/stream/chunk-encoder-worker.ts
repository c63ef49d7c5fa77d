/**
 * Worker thread of {@link ChunkEncoder}: encodes recorded chunks (deflate +
 * base64) off the relay's event loop. The relay copies chunks into
 * shared-memory slots and sends [id, slot, length, ...]; the reply is
 * [id, stored data, size, kind, ...] in the same order. Stateless.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { encodeRequest, type EncodeRequest, type EncoderWorkerData } from './chunk-encoder.ts';

const port = parentPort;
if (port === null) throw new Error('chunk-encoder-worker must run as a worker thread');
const { slots, slotBytes } = workerData as EncoderWorkerData;
const view = Buffer.from(slots);
port.on('message', (req: EncodeRequest) => port.postMessage(encodeRequest(view, slotBytes, req)));
