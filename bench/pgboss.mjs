// pg-boss on PostgreSQL, tuned per its docs: one polling worker per unit of concurrency
// (each work() call adds a worker), batch fetches, and the shortest polling interval.
import * as mod from 'pg-boss';
import { N, C, batches, countdown, report, analyze } from './common.mjs';

const PgBoss = mod.PgBoss ?? mod.default;
const boss = new PgBoss({ connectionString: process.env.PG_URL, max: 20 });
boss.on('error', (e) => console.error(e));
await boss.start();
await boss.createQueue('bench');
const t0 = performance.now();
for (const b of batches()) await boss.insert('bench', b.map((i) => ({ data: { i } })));
const t1 = performance.now();
const untimed = await analyze((sql) => boss.getDb().executeSql(sql));
const c = countdown(N);
const handler = async (jobs) => { c.tick(jobs.length); };
for (let w = 0; w < C; w++) await boss.work('bench', { batchSize: 100, pollingIntervalSeconds: 0.5 }, handler);
await c.done;
const t2 = performance.now();
report('pg-boss 12.38.0', t0, t1, t2, {}, untimed);
await boss.stop({ graceful: false, wait: false }).catch(() => {});
process.exit(0);
