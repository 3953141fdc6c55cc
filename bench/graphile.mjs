// graphile-worker on PostgreSQL, with the batching preset from its performance docs
// (local queue, batched completions).
import { run, makeWorkerUtils } from 'graphile-worker';
import { N, C, batches, countdown, report } from './common.mjs';

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
const utils = await makeWorkerUtils({ preset });
await utils.migrate();
const t0 = performance.now();
for (const b of batches()) await utils.addJobs(b.map((i) => ({ identifier: 'noop', payload: { i } })));
const t1 = performance.now();
const c = countdown(N);
const runner = await run({ preset, noHandleSignals: true, taskList: { noop: async () => { c.tick(); } } });
await c.done;
await runner.stop(); // flushes the batched completions
const t2 = performance.now();
report('graphile-worker 0.18.0', t0, t1, t2);
await utils.release();
