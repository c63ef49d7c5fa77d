/**
 * The event pipeline every component emits into: `createEventPipeline`
 * returns a KafkaSink (with spool fallback) when `config.kafka` is set, the
 * local log under `config.dataDir` otherwise.
 *
 * Data dir layout (per component, so the webhook and the gateway of
 * `kubetrail start` can share one dir without sharing a chain):
 *
 *   dataDir/instance-id              stable instance id, generated once
 *   dataDir/locks/<component>.lock   pid of the process using this component's files
 *   dataDir/chain/<component>-<instance>.head   chain head {seq, hash}
 *   dataDir/keys/dev-signing.pem     dev signing key (only when signing.keyFile is unset)
 *   dataDir/log/<component>/NNN.ndjson    local log segments (no Kafka)
 *   dataDir/spool/<component>/NNN.ndjson  spool segments + cursor (Kafka)
 *
 * and, with `signing.headDir`, one `<cluster>_<component>_<instance>.head.json`
 * there: the latest signed head (core/chain/signed-head.ts).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, readlinkSync, unlinkSync, writeFileSync, writeSync, accessSync, constants } from 'node:fs';
import path from 'node:path';
import type { Registry } from 'prom-client';
import type { Config } from './config.ts';
import type { EventSource, KubetrailEvent } from './events/model.ts';
import type { Logger } from './logger.ts';
import type { EventSink } from './sinks/sink.ts';
import { HeadStore, storedHead, type ChainHead } from './chain/head-store.ts';
import { ChainSealer } from './chain/sealer.ts';
import { loadSigningKey } from './chain/signing.ts';
import { SignedHeadWriter } from './chain/signed-head.ts';
import { SinkError } from './sinks/errors.ts';
import { sinkMetrics } from './sinks/metrics.ts';
import { SegmentLog } from './sinks/segment-log.ts';
import { LocalLogSink } from './sinks/local-log-sink.ts';
import { Spool } from './sinks/spool.ts';
import { InflightJournal } from './sinks/inflight-journal.ts';
import { KafkaSink } from './sinks/kafka-sink.ts';
import { createKafka, probeKafka } from './sinks/kafka-client.ts';

/** The pipeline as components see it: an EventSink plus what health checks need. */
export interface EventPipeline extends EventSink {
  readonly kind: 'kafka' | 'local';
  /** False once closed, or while refusing work (spool full, fail-closed). */
  ready(): boolean;
}

/** Options of {@link createEventPipeline}. */
export interface PipelineOptions {
  config: Config;
  log: Logger;
  registry: Registry;
  component: EventSource['component'];
  /** Overrides config.instance and the stored id (tests, several pipelines per process). */
  instance?: string;
}

/** Directory of the local log of one component. */
export function localLogDir(dataDir: string, component: string): string {
  return path.join(dataDir, 'log', component);
}

/** Directory of the spool of one component. */
export function spoolDir(dataDir: string, component: string): string {
  return path.join(dataDir, 'spool', component);
}

function dataDirError(dir: string, err: unknown): SinkError {
  return new SinkError('SINK_ERR_DATA_DIR', `dataDir: ${dir} is not a writable directory (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { setting: 'dataDir', cause: err });
}

/** The stable instance id of this data dir: config.instance, or generated once and stored. */
function instanceId(config: Config): string {
  if (config.instance !== undefined) return config.instance;
  const file = path.join(config.dataDir, 'instance-id');
  try {
    const id = readFileSync(file, 'utf8').trim();
    if (id !== '') return id;
  } catch {
    // not there yet
  }
  const id = `kt-${randomBytes(6).toString('hex')}`;
  try {
    writeFileSync(file, `${id}\n`, { flag: 'wx' });
    return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFileSync(file, 'utf8').trim();
    throw dataDirError(config.dataDir, err);
  }
}

/** This process among others with the same pid: a restarted container's process is pid 1 again. */
const LOCK_NONCE = randomUUID();

/** The pid namespace of this process ('' where /proc has none): a pid is only meaningful inside it. */
function pidNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return '';
  }
}

/**
 * Whether the holder recorded in a lock file (`pid nonce pidns`, or a bare
 * pid from older versions) may still be using the dataDir. A holder in
 * another pid namespace is a previous container on the same volume (the pod
 * was replaced: its pid, usually 1, means nothing here), and one with our
 * pid but another nonce is a previous process that had our pid; both are
 * gone, since a claim is mounted by one pod of a StatefulSet at a time.
 */
function lockHeld(content: string): { held: boolean; pid: number } {
  const [pidText, nonce, ns] = content.trim().split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return { held: false, pid };
  if (ns !== undefined && ns !== pidNamespace()) return { held: false, pid };
  if (pid === process.pid) return { held: nonce === undefined || nonce === LOCK_NONCE, pid };
  try {
    process.kill(pid, 0);
    return { held: true, pid };
  } catch (e) {
    return { held: (e as NodeJS.ErrnoException).code === 'EPERM', pid };
  }
}

/** Takes the per-component lock; a lock left by a dead process (or a previous container) is taken over. Returns the release function. */
function lock(dataDir: string, component: string): () => void {
  const dir = path.join(dataDir, 'locks');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${component}.lock`);
  const mine = `${process.pid} ${LOCK_NONCE} ${pidNamespace()}`.trim();
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, `${mine}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(file, 'utf8').trim() === mine) unlinkSync(file);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const { held, pid } = lockHeld(readFileSync(file, 'utf8'));
      if (held) {
        throw new SinkError('SINK_ERR_LOCKED', `dataDir: ${dataDir} is in use by process ${pid} for component ${component}; give each process its own dataDir`, { setting: 'dataDir' });
      }
      unlinkSync(file);
    }
  }
  throw new SinkError('SINK_ERR_LOCKED', `dataDir: cannot lock ${file}`, { setting: 'dataDir' });
}

/** The highest link found in a log's last line for this source, if newer than `head`. */
function newerHead(head: ChainHead, lastLine: string | undefined, source: EventSource): ChainHead {
  if (lastLine === undefined) return head;
  try {
    const e = JSON.parse(lastLine) as KubetrailEvent;
    if (e.chain && e.source?.instance === source.instance && e.source.component === source.component && e.chain.seq > head.seq) {
      return { seq: e.chain.seq, hash: e.chain.hash };
    }
  } catch {
    // torn lines were truncated at open; anything else is not ours
  }
  return head;
}

/**
 * Opens the signed-head file of this source in `signing.headDir`, if set.
 * Throws SinkError naming the setting when the directory is unwritable.
 */
function openSignedHead(config: Config, source: EventSource): SignedHeadWriter | undefined {
  if (config.signing.headDir === undefined) return undefined;
  try {
    return new SignedHeadWriter(config.signing.headDir, source);
  } catch (err) {
    throw new SinkError('SINK_ERR_DATA_DIR', `signing.headDir: ${config.signing.headDir} is not a writable directory (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { setting: 'signing.headDir', cause: err });
  }
}

/**
 * The chain never restarts behind its signed head: when the log lost its
 * tail (or was removed), continuing from the log would reuse seqs the
 * signed head already vouches for; continuing after it leaves a gap that
 * verify reports.
 */
function notBehindSignedHead(head: ChainHead, signed: SignedHeadWriter | undefined, log: Logger): ChainHead {
  const s = signed?.chainHead;
  if (s === undefined || s.seq <= head.seq) return head;
  log.error({ seq: head.seq, signedHeadSeq: s.seq, file: signed?.file, setting: 'signing.headDir' }, 'the local files end before the signed head: events were lost or removed; the chain continues after the signed head');
  return s;
}

/**
 * Builds the event pipeline of one component. Throws SinkError naming the
 * setting at fault: `dataDir` (not writable, locked), `signing.keyFile`,
 * `kafka.sasl` (credentials refused), `kafka.ssl`, and `kafka.brokers` when
 * unreachable with `kafka.onUnreachableAtStart: fail` (with `spool`, the
 * default, it logs that error and starts spooling).
 */
export async function createEventPipeline(opts: PipelineOptions): Promise<EventPipeline> {
  const { config, log, component } = opts;
  try {
    mkdirSync(config.dataDir, { recursive: true });
    accessSync(config.dataDir, constants.W_OK);
  } catch (err) {
    throw dataDirError(config.dataDir, err);
  }
  const instance = opts.instance ?? instanceId(config);
  const source: EventSource = { component, instance, cluster: config.cluster };
  let release: () => void;
  try {
    release = lock(config.dataDir, component);
  } catch (err) {
    if (err instanceof SinkError) throw err;
    throw dataDirError(config.dataDir, err);
  }
  const plog = log.child({ component: 'event-pipeline', source: component, instance });
  try {
    const signer = loadSigningKey({ keyFile: config.signing.keyFile, dataDir: config.dataDir, log: plog });
    let headStore: HeadStore;
    try {
      headStore = new HeadStore(path.join(config.dataDir, 'chain'), `${component}-${instance}`);
    } catch (err) {
      throw dataDirError(config.dataDir, err);
    }
    const metrics = sinkMetrics(opts.registry);
    const signedHead = openSignedHead(config, source);
    if (config.kafka === undefined) {
      const segs = SegmentLog.open({
        dir: localLogDir(config.dataDir, component),
        segmentBytes: config.localLog.segmentBytes,
        groupCommitMs: config.spool.groupCommitMs,
        retention: { bytes: config.localLog.retentionBytes, hours: config.localLog.retentionHours },
      });
      const head = notBehindSignedHead(newerHead(headStore.head, segs.lastLineAtOpen, source), signedHead, plog);
      const sealer = new ChainSealer({ source, head, signer, checkpointEvery: config.signing.checkpointEvery });
      plog.info({ dir: segs.dir, seq: head.seq }, 'event pipeline: local log');
      return new LocalLogSink({ sealer, head: headStore, log: segs, metrics, logger: plog, checkpointIntervalMs: config.signing.checkpointIntervalMs, signedHead, onClose: release });
    }
    const k = config.kafka;
    const spool = Spool.open({ dir: spoolDir(config.dataDir, component), segmentBytes: config.spool.segmentBytes, groupCommitMs: config.spool.groupCommitMs });
    let journal: InflightJournal;
    try {
      journal = new InflightJournal(spool.log.dir, { fsync: k.journalSync });
    } catch (err) {
      await spool.close();
      throw dataDirError(config.dataDir, err);
    }
    // The journal holds the last batches handed to Kafka (fdatasync'd before
    // they were sent with kafka.journalSync). Those the chain head file does not cover may or may not
    // be in Kafka: spool them (re-sent as same-id duplicates); either way the
    // chain continues after the newest link in the journal, so a head file left
    // behind by a power cut cannot make this process reuse sequence numbers.
    let head = newerHead(headStore.head, spool.log.lastLineAtOpen, source);
    const leftover = journal.leftover();
    if (leftover.length > 0) {
      const chainDir = path.join(config.dataDir, 'chain');
      const heads = new Map<string, number>();
      const stored = (s: EventSource): number => {
        if (s.component === source.component && s.instance === source.instance) return head.seq;
        const name = `${s.component}-${s.instance}`;
        let seq = heads.get(name);
        if (seq === undefined) heads.set(name, (seq = storedHead(chainDir, name)?.seq ?? 0));
        return seq;
      };
      const resend = leftover.filter((l) => {
        try {
          const e = JSON.parse(l) as KubetrailEvent;
          return (e.chain?.seq ?? 0) > stored(e.source);
        } catch {
          return false; // a torn last line was never sent whole
        }
      });
      for (const l of leftover) head = newerHead(head, l, source);
      if (resend.length > 0) {
        await spool.append(resend);
        plog.warn({ events: resend.length }, 'previous process stopped with a batch in flight; it is re-sent from the spool (same-id duplicates are possible)');
      }
      // The spool and the head file now cover what the journal held: make the
      // head durable before the journal is emptied.
      headStore.save(head);
      headStore.sync();
      journal.clear();
    }
    let reachable = true;
    try {
      await probeKafka(k, plog);
    } catch (err) {
      const se = err as SinkError;
      if (se.code !== 'SINK_ERR_KAFKA_UNREACHABLE' || k.onUnreachableAtStart === 'fail') {
        await spool.close();
        throw se;
      }
      reachable = false;
      plog.warn({ setting: se.setting, error: se.message }, 'kafka unreachable at start; spooling until it is (kafka.onUnreachableAtStart=spool)');
    }
    head = notBehindSignedHead(head, signedHead, plog);
    const sealer = new ChainSealer({ source, head, signer, checkpointEvery: config.signing.checkpointEvery });
    // Fails here, naming the setting, when TLS/SASL files cannot be read (the producer thread builds its own client from the same settings).
    createKafka(k, plog);
    const sink = new KafkaSink({
      settings: k,
      spoolSettings: config.spool,
      sealer,
      head: headStore,
      spool,
      metrics,
      logger: plog,
      checkpointIntervalMs: config.signing.checkpointIntervalMs,
      startSpooling: !reachable || !spool.empty,
      journal,
      signedHead,
      onClose: release,
    });
    if (reachable && spool.empty) await sink.connect();
    plog.info({ brokers: k.brokers, format: k.format, seq: head.seq, spooling: sink.spooling }, 'event pipeline: kafka');
    return sink;
  } catch (err) {
    release();
    throw err;
  }
}
