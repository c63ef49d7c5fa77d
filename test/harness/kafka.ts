/**
 * The harness's Kafka: a single-node KRaft broker run from the Maven Central
 * jars (fetched once into the cache), on free loopback ports, with optional
 * TLS and SASL listeners and a listener for pods on the node's host address.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { KAFKA_VERSION, cacheDir, freePort, progress, spawnLogged, stopChild, waitFor } from './processes.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** Fetches the Kafka jars from Maven Central into the cache if missing. */
export function ensureKafkaJars(): string {
  const libs = path.join(cacheDir(), `kafka-${KAFKA_VERSION}`, 'libs');
  const stamp = path.join(libs, '.complete');
  if (existsSync(stamp)) return libs;
  progress(`fetching Kafka ${KAFKA_VERSION} jars from Maven Central into ${libs} (first run only)`);
  const r = spawnSync(
    'mvn',
    ['-q', '-B', '-f', path.join(HERE, 'kafka', 'pom.xml'), 'dependency:copy-dependencies', `-DoutputDirectory=${libs}`, '-DincludeScope=runtime'],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (r.status !== 0) throw new Error(`mvn dependency:copy-dependencies failed (exit ${r.status})`);
  writeFileSync(stamp, `${KAFKA_VERSION}\n`);
  return libs;
}

/** A running Kafka broker. */
export interface KafkaBroker {
  readonly brokers: string[];
  /** SASL_PLAINTEXT listener, when started with `saslUsers`. */
  readonly saslBrokers?: string[];
  /** SSL listener (mutual TLS when `tls.clientCaPem` is set), when started with `tls`. */
  readonly sslBrokers?: string[];
  /** SASL_SSL listener (server-authenticated TLS, then SASL), when started with both `tls` and `saslUsers`. */
  readonly saslSslBrokers?: string[];
  /** PLAINTEXT listener on the node's host address, advertised as such, when started with `podListenerIp`. */
  readonly podBrokers?: string[];
  readonly port: number;
  readonly dir: string;
  /** Sends a signal (default SIGKILL) and waits for the process to go. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the broker again on the same port and data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
  readonly pid: number | undefined;
}

/** Options for {@link startKafka}. */
export interface KafkaOptions {
  dir: string;
  /** Keep the process alive after this Node process exits (for `harness up`). */
  detached?: boolean;
  /** Adds a SASL_PLAINTEXT listener with PLAIN and SCRAM users (name → password). */
  saslUsers?: Record<string, string>;
  /**
   * Adds an SSL listener serving this certificate (PEM; the key may be PKCS#1
   * or PKCS#8), requiring a client certificate signed by `clientCaPem` when
   * given; with `saslUsers` also a SASL_SSL listener.
   */
  tls?: { certPem: string; keyPem: string; clientCaPem?: string };
  /**
   * Adds a PLAINTEXT listener bound to and advertised on this address (the
   * node's host end, 172.30.N.1), so pods reach the broker: a relay to the
   * loopback listener would not do, as clients then connect to the address the
   * broker advertises.
   */
  podListenerIp?: string;
}

async function kafkaReady(brokers: string[]): Promise<boolean> {
  const kafka = new Kafka({ clientId: 'harness-probe', brokers, logLevel: logLevel.NOTHING, connectionTimeout: 1000, retry: { retries: 0 } });
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.describeCluster();
    return true;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

function javaProcess(libs: string, mainClass: string, args: string[], logFile: string, detached: boolean): ChildProcess {
  return spawnLogged(
    'java',
    [
      '-Xms256m',
      '-Xmx768m',
      '-XX:+UseG1GC',
      '-XX:TieredStopAtLevel=1',
      `-Dlog4j2.configurationFile=${path.join(HERE, 'kafka', 'log4j2.properties')}`,
      '-cp',
      `${libs}/*`,
      mainClass,
      ...args,
    ],
    logFile,
    detached,
  );
}

/** Starts a single-node KRaft Kafka broker on free loopback ports. */
export async function startKafka(opts: KafkaOptions): Promise<KafkaBroker> {
  const libs = ensureKafkaJars();
  mkdirSync(opts.dir, { recursive: true });
  const port = await freePort();
  const controllerPort = await freePort();
  const saslPort = opts.saslUsers ? await freePort() : 0;
  const sslPort = opts.tls ? await freePort() : 0;
  const saslSslPort = opts.tls && opts.saslUsers ? await freePort() : 0;
  const podPort = opts.podListenerIp ? await freePort() : 0;
  const dataDir = path.join(opts.dir, 'data');
  const extra: { name: string; port: number }[] = [];
  if (opts.saslUsers) extra.push({ name: 'SASL_PLAINTEXT', port: saslPort });
  if (opts.tls) extra.push({ name: 'SSL', port: sslPort });
  if (saslSslPort !== 0) extra.push({ name: 'SASL_SSL', port: saslSslPort });
  const extraListeners =
    extra.map((l) => `,${l.name}://127.0.0.1:${l.port}`).join('') + (opts.podListenerIp ? `,PODS://${opts.podListenerIp}:${podPort}` : '');
  const props = [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}${extraListeners}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}${extraListeners}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    `listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT${extra.map((l) => `,${l.name}:${l.name}`).join('')}${opts.podListenerIp ? ',PODS:PLAINTEXT' : ''}`,
    `log.dirs=${dataDir}`,
    'num.partitions=1',
    'offsets.topic.replication.factor=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=true',
    'log.flush.interval.messages=9223372036854775807',
  ];
  if (opts.saslUsers) {
    props.push('sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512');
    const plainUsers = Object.entries(opts.saslUsers)
      .map(([u, p]) => `user_${u}="${p}"`)
      .join(' ');
    for (const l of extra.filter((x) => x.name.startsWith('SASL_'))) {
      const n = l.name.toLowerCase();
      props.push(
        `listener.name.${n}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required ${plainUsers};`,
        `listener.name.${n}.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;`,
        `listener.name.${n}.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;`,
      );
    }
  }
  if (opts.tls) {
    // Kafka reads PEM key stores from files; the key must be PKCS#8.
    const keystore = path.join(opts.dir, 'broker-keystore.pem');
    const pkcs8 = createPrivateKey(opts.tls.keyPem).export({ type: 'pkcs8', format: 'pem' }).toString();
    writeFileSync(keystore, pkcs8 + opts.tls.certPem, { mode: 0o600 });
    props.push('ssl.keystore.type=PEM', `ssl.keystore.location=${keystore}`);
    if (opts.tls.clientCaPem !== undefined) {
      const truststore = path.join(opts.dir, 'broker-truststore.pem');
      writeFileSync(truststore, opts.tls.clientCaPem);
      props.push('ssl.truststore.type=PEM', `ssl.truststore.location=${truststore}`, 'listener.name.ssl.ssl.client.auth=required');
    }
    if (saslSslPort !== 0) props.push('listener.name.sasl_ssl.ssl.client.auth=none');
  }
  const propsFile = path.join(opts.dir, 'server.properties');
  writeFileSync(propsFile, props.join('\n') + '\n');
  const logFile = path.join(opts.dir, 'kafka.log');
  if (!existsSync(path.join(dataDir, 'meta.properties'))) {
    // Kafka's own random cluster ids never start with '-' (the format tool's
    // argument parser would read one as an option: about 1 start in 64).
    let clusterId = randomBytes(16).toString('base64url');
    while (clusterId.startsWith('-')) clusterId = randomBytes(16).toString('base64url');
    const formatArgs = ['format', '-t', clusterId, '-c', propsFile];
    for (const [u, p] of Object.entries(opts.saslUsers ?? {})) {
      formatArgs.push('--add-scram', `SCRAM-SHA-256=[name=${u},password=${p}]`, '--add-scram', `SCRAM-SHA-512=[name=${u},password=${p}]`);
    }
    const r = spawnSync('java', ['-Xmx256m', `-Dlog4j2.configurationFile=${path.join(HERE, 'kafka', 'log4j2.properties')}`, '-cp', `${libs}/*`, 'kafka.tools.StorageTool', ...formatArgs], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`kafka storage format failed (exit ${r.status}): ${r.stderr}${r.stdout}`);
  }
  const brokers = [`127.0.0.1:${port}`];
  let child: ChildProcess;
  const launch = async (): Promise<void> => {
    child = javaProcess(libs, 'kafka.Kafka', [propsFile], logFile, opts.detached ?? false);
    await waitFor('kafka', () => kafkaReady(brokers), 90_000, child, logFile);
  };
  const started = Date.now();
  await launch();
  progress(`kafka ${KAFKA_VERSION} ready on ${brokers[0]} in ${Date.now() - started} ms`);
  const kill = (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => stopChild(child, signal);
  return {
    brokers,
    port,
    dir: opts.dir,
    get pid() {
      return child.pid;
    },
    kill,
    restart: launch,
    stop: () => kill('SIGTERM'),
    ...(opts.saslUsers ? { saslBrokers: [`127.0.0.1:${saslPort}`] } : {}),
    ...(opts.tls ? { sslBrokers: [`127.0.0.1:${sslPort}`] } : {}),
    ...(saslSslPort !== 0 ? { saslSslBrokers: [`127.0.0.1:${saslSslPort}`] } : {}),
    ...(opts.podListenerIp ? { podBrokers: [`${opts.podListenerIp}:${podPort}`] } : {}),
  };
}
