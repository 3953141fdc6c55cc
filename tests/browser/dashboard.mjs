// Drives the Switchboard dashboard in headless Chromium as an operator would.
// Inputs (environment): BASE_URL, EMAIL, PASSWORD, SCREENSHOT_DIR. Exits non-zero on any failure.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOT_DIR || '.';
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const step = (name) => console.log(`step: ${name}`);
// Clicks something that submits or links, and waits for the page it leads to.
const go = async (page, locator) => {
  await Promise.all([page.waitForEvent('framenavigated'), locator.click()]);
  await page.waitForLoadState('load');
};
let page;
try {
  page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

  step('login redirects and succeeds');
  await page.goto(`${base}/dashboard`);
  assert.match(page.url(), /\/dashboard\/login$/);
  await page.fill('input[name=email]', 'nobody@example.com');
  await page.fill('input[name=password]', 'wrong-password');
  await page.click('button[type=submit]');
  assert.match(await page.textContent('[role=alert]'), /Wrong e-mail or password/);
  await page.fill('input[name=email]', process.env.EMAIL);
  await page.fill('input[name=password]', process.env.PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/dashboard`);
  assert.equal(await page.textContent('#audit-status'), 'intact');
  errors.length = 0; // the deliberate failed login above logged its 401

  step('queues show live counts');
  await page.click('header >> text=Queues');
  await page.waitForURL(`${base}/dashboard/queues`);
  const row = page.locator('tr[data-queue=emails]');
  assert.equal(await row.locator('a[data-state=available]').textContent(), '2');
  assert.equal(await row.locator('a[data-state=failed]').textContent(), '1');
  await page.screenshot({ path: `${shots}/dashboard-queues.png`, fullPage: true });

  step('pause and resume a queue');
  await go(page, row.locator('button', { hasText: 'pause' }));
  assert.match(await page.locator('tr[data-queue=emails]').textContent(), /\(paused\)/);
  await go(page, page.locator('tr[data-queue=emails] button', { hasText: 'resume' }));
  assert.doesNotMatch(await page.locator('tr[data-queue=emails]').textContent(), /\(paused\)/);

  step('filter jobs and open the failed one');
  await page.locator('tr[data-queue=emails] a[data-state=failed]').click();
  await page.waitForURL(/\/dashboard\/jobs\?queue=emails&state=failed/);
  const rows = page.locator('#jobs tbody tr');
  assert.equal(await rows.count(), 1);
  await rows.first().locator('a').click();
  await page.waitForURL(/\/dashboard\/jobs\/job_/);
  assert.equal(await page.textContent('#job-state'), 'failed');
  assert.match(await page.textContent('#attempts'), /smtp refused/);
  assert.match(await page.textContent('main'), /"to": "a@example.com"/);

  step('retry, then cancel it');
  await go(page, page.locator('#retry'));
  assert.equal(await page.textContent('#job-state'), 'available');
  await go(page, page.locator('#cancel'));
  assert.equal(await page.textContent('#job-state'), 'cancelled');
  await page.screenshot({ path: `${shots}/dashboard-job.png`, fullPage: true });

  step('schedules list next runs and run on demand');
  await page.click('header >> text=Schedules');
  await page.waitForURL(`${base}/dashboard/schedules`);
  assert.match(await page.textContent('#schedules'), /daily-report/);
  assert.match(await page.textContent('#schedules'), /0 2 \* \* \*/);
  await page.click('#schedules button');
  await page.waitForURL(/\/dashboard\/jobs\/job_/);
  assert.match(await page.textContent('main'), /reports/);

  assert.deepEqual(errors, [], 'no script or console errors');
  console.log('dashboard: all steps passed');
} catch (e) {
  if (page) {
    console.error(`failed at ${page.url()}:\n${(await page.textContent('body').catch(() => '')).slice(0, 600)}`);
    await page.screenshot({ path: `${shots}/dashboard-failure.png`, fullPage: true }).catch(() => {});
  }
  throw e;
} finally {
  await browser.close();
}
