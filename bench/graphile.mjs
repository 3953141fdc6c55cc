// graphile-worker on PostgreSQL, with the batching preset from its performance docs
// (local queue, batched completions).
import { run, makeWorkerUtils, Logger } from 'graphile-worker';
import { N, C, batches, countdown, report, latencyProbe, analyze } from './common.mjs';

const preset = {
  worker: {
    connectionString: process.env.PG_URL,
    concurrentJobs: C,
    maxPoolSize: C + 1,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
};
const utils = await makeWorkerUtils({ preset, logger: new Logger(() => () => {}) });
await utils.migrate();
const t0 = performance.now();
for (const b of batches()) await utils.addJobs(b.map((i) => ({ identifier: 'noop', payload: { i } })));
const t1 = performance.now();
const untimed = await analyze((sql) => utils.withPgClient((client) => client.query(sql)));
const c = countdown(N);
const probe = latencyProbe();
// Per-job INFO logging would measure the console, not the queue: keep warnings only.
const logger = new Logger(() => (level, message) => { if (level === 'error' || level === 'warning') console.error(message); });
const runner = await run({ preset, logger, noHandleSignals: true,
  taskList: { noop: async (payload) => { probe.started(payload); if (payload.t === undefined) c.tick(); } } });
await c.done;
const t2 = performance.now();
const lat = await probe.run((payload) => utils.addJob('noop', payload), N / ((t2 - t1 - untimed) / 1000));
await runner.stop(); // flushes the batched completions
report('graphile-worker 0.18.0', t0, t1, t2, lat, untimed);
await utils.release();
