/**
 * Benchmarks write gigabytes to the harness broker (a webhook run alone
 * leaves ~450 MB per topic); a long-lived `npm run harness -- up` would keep
 * them all. Each benchmark deletes the topics it created when it ends.
 */
import { Kafka, logLevel } from 'kafkajs';

/** Deletes the topics whose names match `pattern`; reports, never throws. */
export async function dropBenchTopics(brokers: readonly string[], pattern: RegExp): Promise<void> {
  const admin = new Kafka({ clientId: 'bench-cleanup', brokers: [...brokers], logLevel: logLevel.NOTHING }).admin();
  try {
    await admin.connect();
    const topics = (await admin.listTopics()).filter((t) => pattern.test(t));
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 30_000 });
  } catch (err) {
    process.stderr.write(`bench: could not delete the benchmark topics (${(err as Error).message}); delete ${pattern} by hand\n`);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
