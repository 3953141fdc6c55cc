// Shared workload settings and reporting for the peer benchmarks.
export const N = Number(process.env.N || 100000);
export const C = Number(process.env.C || 50);
export const BATCH = Number(process.env.BATCH || 1000);

export function report(system, t0, t1, t2) {
  const enqueue = N / ((t1 - t0) / 1000);
  const drain = N / ((t2 - t1) / 1000);
  const e2e = N / ((t2 - t0) / 1000);
  console.log(JSON.stringify({ system, jobs: N, concurrency: C, batch: BATCH,
    enqueue_per_sec: Math.round(enqueue), drain_per_sec: Math.round(drain), end_to_end_per_sec: Math.round(e2e) }));
}

export function batches() {
  const out = [];
  for (let i = 0; i < N; i += BATCH) out.push(Array.from({ length: Math.min(BATCH, N - i) }, (_, k) => i + k));
  return out;
}

export function countdown(n) {
  let left = n;
  let resolve;
  const done = new Promise((r) => { resolve = r; });
  return { done, tick: (k = 1) => { left -= k; if (left <= 0) resolve(); } };
}
