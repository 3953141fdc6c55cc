// Drives the Switchboard dashboard in headless Chromium as an operator would: every page,
// the actions with their confirmations, live values changing without a reload, and one
// screenshot per page, each checked to have rendered without console errors.
// Inputs (environment): BASE_URL, EMAIL, PASSWORD, API_KEY, FAILED_JOB, RUNS_JOB, PUSH_JOB,
// SCHEDULE, SCREENSHOT_DIR. Exits non-zero on any failure.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const env = (name) => {
  const v = process.env[name];
  assert.ok(v, `${name} is not set`);
  return v;
};
const base = env('BASE_URL');
const apiKey = env('API_KEY');
const failedJob = env('FAILED_JOB');
const runsJob = env('RUNS_JOB');
const pushJob = env('PUSH_JOB');
const schedule = env('SCHEDULE');
const shots = process.env.SCREENSHOT_DIR || '.';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const step = (name) => console.log(`step: ${name}`);
const api = async (method, path, body) => {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
};

let page;
const errors = [];
// Clicks something that submits or links, and waits for the page it leads to.
const go = async (locator) => {
  await Promise.all([page.waitForEvent('framenavigated'), locator.click()]);
  await page.waitForLoadState('load');
};
const text = async (selector) => (await page.locator(selector).first().textContent()).trim();
const main = async () => page.textContent('main');
const shotted = [];
// Checks the page rendered (a title, styles applied, no inline script, no console error)
// and takes its screenshot.
const shot = async (name) => {
  await page.waitForLoadState('load');
  assert.ok(await page.locator('main h1').isVisible(), `${name}: page has its title`);
  const styled = await page.evaluate(() => getComputedStyle(document.querySelector('header')).display);
  assert.equal(styled, 'flex', `${name}: the style sheet applies`);
  const inline = await page.evaluate(() => document.querySelectorAll('script:not([src])').length);
  assert.equal(inline, 0, `${name}: no inline script`);
  assert.deepEqual(errors, [], `${name}: no script or console errors`);
  const path = `${shots}/dashboard-${name}.png`;
  await page.screenshot({ path, fullPage: true });
  shotted.push(path);
};
// A deliberate 4xx page logs its status in the console; that one is expected.
const expectStatusLogged = (status) => {
  const rest = errors.filter((e) => !e.includes(`status of ${status}`));
  assert.deepEqual(rest, [], 'only the expected status was logged');
  errors.length = 0;
};
const confirmDialog = async (button, expect) => {
  await button.click();
  const dialog = page.locator('#confirm-dialog');
  await dialog.waitFor({ state: 'visible' });
  assert.match(await dialog.textContent(), expect);
  return dialog;
};

try {
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

  step('a failed login keeps the e-mail typed');
  await page.goto(`${base}/dashboard`);
  assert.match(page.url(), /\/dashboard\/login$/);
  await page.fill('input[name=email]', 'nobody@example.com');
  await page.fill('input[name=password]', 'wrong-password');
  await go(page.locator('button[type=submit]'));
  assert.match(await text('[role=alert]'), /Wrong e-mail or password/);
  assert.equal(await page.inputValue('input[name=email]'), 'nobody@example.com');
  expectStatusLogged(401);
  await shot('login');
  await page.fill('input[name=email]', env('EMAIL'));
  await page.fill('input[name=password]', env('PASSWORD'));
  await go(page.locator('button[type=submit]'));
  assert.equal(page.url(), `${base}/dashboard`);

  step('overview: every queue at a glance');
  const card = page.locator('article[data-queue=emails]');
  assert.equal(await card.locator('a[data-state=available] .live').textContent(), '2');
  assert.equal(await card.locator('a[data-state=failed] .live').textContent(), '1');
  assert.equal(await page.locator('#chart-emails svg rect.hit').count(), 60, 'a bar per minute');
  assert.match(await text('article[data-queue=sync] .facts'), /Oldest waiting: \d+ s/);
  assert.match(await text('#audit-events'), /^\d+$/);
  await shot('overview');

  step('live counts change without a reload');
  await page.evaluate(() => { window.notReloaded = true; });
  await api('POST', '/v1/jobs', { queue: 'emails', kind: 'welcome', payload: { to: 'd@example.com' } });
  await page.waitForFunction(
    () => document.querySelector('[data-live="q:emails:available"]').textContent === '3',
    null, { timeout: 10000 });
  assert.equal(await page.evaluate(() => window.notReloaded), true, 'same document');

  step('audit chain verified on demand');
  await go(page.locator('#verify-audit'));
  assert.equal(await text('#audit-status'), 'intact');
  await shot('audit');

  step('queue list: pause and resume');
  await go(page.locator('header >> text=Queues'));
  const row = () => page.locator('tr[data-queue=emails]');
  assert.equal(await row().locator('a[data-state=available] .live').textContent(), '3');
  await shot('queues');
  await go(row().locator('button', { hasText: 'Pause' }));
  assert.match(await text('.flash'), /Queue paused/);
  assert.equal(await row().locator('.badge').textContent(), 'paused');
  await go(row().locator('button', { hasText: 'Resume' }));
  assert.equal(await row().locator('.badge').textContent(), '');

  step('queue page: jobs by state, search, charts');
  await go(row().locator('a', { hasText: 'emails' }).first());
  assert.equal(page.url(), `${base}/dashboard/queues/emails`);
  assert.ok(await page.locator('#chart svg').isVisible());
  assert.equal(await page.locator('#jobs tbody tr').count(), 4);
  await go(page.locator('a[data-state=failed]'));
  assert.equal(await page.locator('#jobs tbody tr').count(), 1);
  assert.match(await text('#jobs tbody tr'), /smtp refused/);
  await shot('queue');
  await page.goto(`${base}/dashboard/queues/emails?state=bogus`);
  assert.match(await text('#filter-problem'), /“bogus” is not a job state/);
  expectStatusLogged(400);
  await page.fill('input[name=kind]', 'nothing-like-this');
  await page.selectOption('select[name=state]', '');
  await go(page.locator('section.filtered form.filters button[type=submit]'));
  assert.match(await text('#jobs-empty'), /No jobs match/);

  step('bulk delete a selection, with confirmation');
  await page.goto(`${base}/dashboard/queues/emails?state=available`);
  const boxes = page.locator('#jobs tbody input[type=checkbox]');
  assert.equal(await boxes.count(), 3);
  const del = page.locator('button[value=delete]');
  assert.equal(await del.isDisabled(), true, 'nothing selected yet');
  await boxes.nth(0).check();
  await boxes.nth(1).check();
  assert.equal(await text('[data-selected-count]'), '2 selected');
  let dialog = await confirmDialog(del, /Delete the selected jobs/);
  await page.screenshot({ path: `${shots}/dashboard-confirm-dialog.png` });
  shotted.push(`${shots}/dashboard-confirm-dialog.png`);
  await page.click('#dialog-cancel');
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await boxes.count(), 3, 'cancel changes nothing');
  await confirmDialog(del, /Delete the selected jobs/);
  await go(page.locator('#dialog-ok'));
  assert.match(await text('.flash'), /2 jobs deleted\./);
  assert.equal(await page.locator('#jobs tbody tr').count(), 1);

  step('bulk retry a selection, with confirmation');
  await page.goto(`${base}/dashboard/queues/imports?state=failed`);
  await page.check('[data-select-all]');
  assert.equal(await text('[data-selected-count]'), '2 selected');
  await confirmDialog(page.locator('button[value=retry]'), /Retry the selected jobs/);
  await go(page.locator('#dialog-ok'));
  assert.match(await text('.flash'), /2 jobs retried\./);
  assert.match(await text('#jobs-empty'), /No jobs match/);

  step('settings: a validation error, then saved');
  await page.goto(`${base}/dashboard/queues/emails`);
  await page.fill('#f-concurrency', '0');
  await go(page.locator('#save-settings'));
  expectStatusLogged(422);
  assert.match(await text('#f-concurrency-error'), /must be 1 to 1000/);
  assert.equal(await page.inputValue('#f-concurrency'), '0', 'what was typed stays');
  await page.fill('#f-concurrency', '7');
  await go(page.locator('#save-settings'));
  assert.match(await text('.flash'), /Settings saved/);
  assert.equal(await page.inputValue('#f-concurrency'), '7');

  step('jobs page and the job-id search');
  await go(page.locator('header >> text=Jobs'));
  assert.ok(await page.locator('#jobs tbody tr').count() >= 5);
  await shot('jobs');
  await page.fill('#find-job', failedJob);
  await go(page.locator('form[action="/dashboard/jobs/find"] button'));
  assert.equal(page.url(), `${base}/dashboard/jobs/${failedJob}`);

  step('job detail: retry, then cancel with confirmation');
  assert.equal(await text('#job-state'), 'failed');
  assert.match(await text('#runs'), /smtp refused/);
  assert.match(await text('#payload'), /"to": "a@example.com"/);
  assert.match(await text('#timeline'), /Created[\s\S]*Attempt 1 failed: smtp refused[\s\S]*Finished: failed/);
  await go(page.locator('#retry'));
  assert.equal(await text('#job-state'), 'available');
  await confirmDialog(page.locator('#cancel'), /Cancel this job\?/);
  await go(page.locator('#dialog-ok'));
  assert.equal(await text('#job-state'), 'cancelled');
  assert.equal(await page.locator('section.run').count(), 2, 'the retry started a second run');
  await shot('job');

  step('job detail: runs separated, live state');
  await page.goto(`${base}/dashboard/jobs/${runsJob}`);
  const runs = page.locator('section.run');
  assert.equal(await runs.count(), 3);
  const attempts = async (i) => runs.nth(i).locator('tr[data-attempt]').evaluateAll(
    (rows) => rows.map((r) => r.dataset.attempt).join(','));
  assert.equal(await attempts(0), '1,2');
  assert.equal(await attempts(1), '1,2');
  assert.equal(await attempts(2), '');
  assert.match(await runs.nth(2).locator('h3').textContent(), /Run 3 \(current, after a manual retry\)/);
  assert.equal(await page.locator('#timeline li', { hasText: 'Retried by hand' }).count(), 2);
  assert.equal(await text('#job-state'), 'available');
  await shot('job-runs');
  await page.evaluate(() => { window.notReloaded = true; });
  const claimed = await api('POST', '/v1/queues/sync/claim', { worker: 'browser-test' });
  assert.equal(claimed.jobs[0].id, runsJob);
  await page.waitForFunction(() => document.querySelector('#job-state').textContent === 'running', null, { timeout: 10000 });
  assert.ok(await page.locator('#job-state.state-running').isVisible(), 'its style follows the state');
  assert.equal(await page.evaluate(() => window.notReloaded), true);

  step('push job: its target, never its header values');
  await page.goto(`${base}/dashboard/jobs/${pushJob}`);
  assert.match(await text('#job-target'), /PUT\s+https:\/\/example\.com\/hooks\/ping/);
  assert.match(await text('#job-target'), /Authorization/);
  assert.doesNotMatch(await page.content(), /s3cr3t-header-value/);
  await shot('job-push');

  step('schedules: zones, pause, resume, trigger');
  await go(page.locator('header >> text=Schedules'));
  const srow = () => page.locator('tr[data-schedule=daily-report]');
  assert.match(await srow().textContent(), /02:00 \+05[\s\S]*21:00 UTC/);
  await shot('schedules');
  await go(srow().locator('button', { hasText: 'Pause' }));
  assert.match(await text('.flash'), /Schedule paused/);
  assert.match(await srow().locator('.status').textContent(), /paused/);
  await go(srow().locator('button', { hasText: 'Resume' }));
  assert.match(await srow().locator('.status').textContent(), /active/);
  await go(srow().locator('button', { hasText: 'Run now' }));
  assert.match(page.url(), /\/dashboard\/jobs\/job_/);
  assert.match(await text('.flash'), /Schedule triggered/);
  assert.match(await main(), /reports/);
  assert.match(await text('#job-tags'), new RegExp(`schedule:${schedule}`));

  step('schedule page: last runs, edit with a validation error, delete');
  await page.goto(`${base}/dashboard/schedules/${schedule}`);
  assert.equal(await page.locator('#schedule-runs tbody tr').count(), 1);
  assert.match(await text('#next-runs'), /UTC/);
  await shot('schedule');
  await page.fill('#f-cron', '0 25 * * *');
  await go(page.locator('#save-schedule'));
  expectStatusLogged(422);
  assert.ok(await page.locator('#f-cron-error').isVisible());
  await page.fill('#f-cron', '30 3 * * *');
  await go(page.locator('#save-schedule'));
  assert.match(await text('.flash'), /Schedule saved/);
  assert.match(await text('#schedule-detail'), /30 3 \* \* \*/);
  await confirmDialog(page.locator('button', { hasText: 'Delete' }), /Delete the schedule “daily-report”/);
  await go(page.locator('#dialog-ok'));
  assert.match(await text('.flash'), /Schedule deleted/);
  assert.match(await text('#schedules-empty'), /No schedules yet/);

  step('API keys');
  await go(page.locator('header >> text=API keys'));
  assert.ok(await page.locator('#keys tbody tr').count() >= 1);
  await shot('keys');

  assert.deepEqual(errors, [], 'no script or console errors');
  console.log(`screenshots:\n${shotted.join('\n')}`);
  console.log('dashboard: all steps passed');
} catch (e) {
  if (page) {
    console.error(`failed at ${page.url()}:\n${(await page.textContent('body').catch(() => '')).slice(0, 1500)}`);
    console.error(`console errors: ${JSON.stringify(errors)}`);
    await page.screenshot({ path: `${shots}/dashboard-failure.png`, fullPage: true }).catch(() => {});
  }
  throw e;
} finally {
  await browser.close();
}
