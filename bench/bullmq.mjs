// BullMQ on Redis (run.sh starts Redis with appendonly yes, appendfsync everysec).
// Tuned per BullMQ's docs: removeOnComplete so Redis does not grow, no auto-pipelining.
import { Queue, Worker } from 'bullmq';
import { N, C, batches, countdown, report, latencyProbe } from './common.mjs';

const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT || 6390) };
const queue = new Queue('bench', { connection });
await queue.obliterate({ force: true }).catch(() => {});
const opts = { removeOnComplete: true, removeOnFail: true };
const t0 = performance.now();
for (const b of batches()) await queue.addBulk(b.map((i) => ({ name: 'noop', data: { i }, opts })));
const t1 = performance.now();
const c = countdown(N);
const probe = latencyProbe();
const worker = new Worker('bench', async (job) => { probe.started(job.data); }, { connection, concurrency: C });
worker.on('completed', () => c.tick());
await c.done;
const t2 = performance.now();
const lat = await probe.run((data) => queue.add('noop', data, opts), N / ((t2 - t1) / 1000));
report('bullmq 6.7.0', t0, t1, t2, lat);
await worker.close();
await queue.close();
