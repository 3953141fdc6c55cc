// Pull workers over HTTP against a running Switchboard node: W workers each claim one job at
// a time (`max: 1`), heartbeat it with progress if HB=1, and complete it, as a simple worker
// in any language would, until N jobs are done. Prints jobs per second and the completion
// call's p50/p99.
//
//   SB_URL=http://127.0.0.1:8080 SB_KEY=sb_… N=5000 W=16 HB=0 node pull.mjs
const url = process.env.SB_URL || 'http://127.0.0.1:8080';
const key = process.env.SB_KEY;
const N = Number(process.env.N || 5000);
const W = Number(process.env.W || 16);
const HB = process.env.HB === '1';
const queue = `pull-${Date.now()}`;
const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };

async function post(path, body) {
  const r = await fetch(url + path, { method: 'POST', headers, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

for (let i = 0; i < N; i += 1000) {
  const jobs = Array.from({ length: Math.min(1000, N - i) }, () => ({ queue, kind: 'pull.noop' }));
  await post('/v1/jobs/batch', { jobs });
}
let left = N;
const took = [];
const t0 = performance.now();
await Promise.all(Array.from({ length: W }, async (_, w) => {
  while (left > 0) {
    const { jobs } = await post(`/v1/queues/${queue}/claim`, { worker: `w${w}`, max: 1 });
    if (jobs.length === 0) continue;
    left -= 1;
    const token = jobs[0].lease_token;
    if (HB) await post(`/v1/jobs/${jobs[0].id}/heartbeat`, { lease_token: token, progress: { pct: 50 } });
    const c0 = performance.now();
    await post(`/v1/jobs/${jobs[0].id}/complete`, { lease_token: token });
    took.push(performance.now() - c0);
  }
}));
const secs = (performance.now() - t0) / 1000;
took.sort((a, b) => a - b);
const at = (p) => took[Math.min(took.length - 1, Math.round((took.length - 1) * p))].toFixed(2);
console.log(JSON.stringify({ jobs: N, workers: W, heartbeat: HB, jobs_per_sec: Math.round(N / secs), complete_p50_ms: at(0.5), complete_p99_ms: at(0.99) }));
