// Shared workload settings and reporting for the peer benchmarks.
export const N = Number(process.env.N || 100000);
export const C = Number(process.env.C || 50);
export const BATCH = Number(process.env.BATCH || 1000);

// `untimedMs`: time spent between the enqueue and the drain that is not counted (the ANALYZE
// that gives a PostgreSQL-backed system the planner statistics autovacuum would).
export function report(system, t0, t1, t2, extra = {}, untimedMs = 0) {
  const enqueue = N / ((t1 - t0) / 1000);
  const drain = N / ((t2 - t1 - untimedMs) / 1000);
  const e2e = N / ((t2 - t0 - untimedMs) / 1000);
  console.log(JSON.stringify({ system, jobs: N, concurrency: C, batch: BATCH,
    enqueue_per_sec: Math.round(enqueue), drain_per_sec: Math.round(drain), end_to_end_per_sec: Math.round(e2e), ...extra }));
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

// Latency at half of peak, the same way `switchboard bench queue` measures it: PRODUCERS
// concurrent producers each add one job per call, first flat out (the peak single-job rate
// while the workers run), then paced at half of that peak (or of the drain rate if lower)
// for three seconds. Each job carries the time its add call began; the handler records
// start minus that.
export const PRODUCERS = 16;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function produce(add, perProducer, rate) {
  const interval = rate ? (PRODUCERS * 1000) / rate : 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: PRODUCERS }, async (_, p) => {
    let next = performance.now() + (interval * p) / PRODUCERS;
    for (let i = 0; i < perProducer; i++) {
      if (rate) {
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
        next += interval;
      }
      await add({ t: performance.now() });
    }
  }));
  return (PRODUCERS * perProducer) / ((performance.now() - t0) / 1000);
}

export function latencyProbe() {
  const waits = [];
  let pending = 0;
  let recording = false;
  let idle = null;
  return {
    // Call from the handler with the job's payload.
    started(payload) {
      if (payload && payload.t !== undefined) {
        if (recording) waits.push(performance.now() - payload.t);
        pending -= 1;
        if (pending === 0 && idle) idle();
      }
    },
    async run(add, drainRate) {
      const drained = () => new Promise((r) => { idle = pending === 0 ? null : r; if (pending === 0) r(); });
      const burst = Math.max(1, Math.floor(drainRate / PRODUCERS));
      pending += burst * PRODUCERS;
      const peak = await produce(add, burst, null);
      await drained();
      const rate = Math.max(10, Math.min(peak, drainRate) / 2);
      const per = Math.max(1, Math.floor((rate * 3) / PRODUCERS));
      recording = true;
      pending += per * PRODUCERS;
      const offered = await produce(add, per, rate);
      await drained();
      waits.sort((a, b) => a - b);
      const pct = (p) => waits[Math.min(waits.length - 1, Math.round((waits.length - 1) * p))];
      return { peak_single_per_sec: Math.round(peak), paced_per_sec: Math.round(offered),
        latency_p50_ms: +pct(0.5).toFixed(2), latency_p99_ms: +pct(0.99).toFixed(2) };
    },
  };
}

// Gives the planner statistics of the enqueued jobs, as autovacuum would on a production
// database (this machine's PostgreSQL runs with autovacuum off), done for every
// PostgreSQL-backed system alike; returns how long it took, which is not timed.
export async function analyze(query) {
  const t = performance.now();
  await query('ANALYZE');
  return performance.now() - t;
}
