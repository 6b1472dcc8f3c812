// Browser tests of the suitcase operator console (docs/console.md), in Debian's Chromium
// driven by playwright-core. scripts/console-test.sh starts the server and runs this with:
//   SUITCASE_BIN   the suitcase binary (for `suitcase sim`)
//   BASE           the server, e.g. http://127.0.0.1:PORT
//   ADMIN_TOKEN    the first admin token
//   SHOTS          where screenshots go (a directory)
// Every wait is bounded; everything talks to 127.0.0.1 only.

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

const BIN = process.env.SUITCASE_BIN;
const BASE = process.env.BASE;
const ADMIN = process.env.ADMIN_TOKEN;
const SHOTS = process.env.SHOTS;
if (!BIN || !BASE || !ADMIN || !SHOTS) {
  console.error('SUITCASE_BIN, BASE, ADMIN_TOKEN and SHOTS must be set (scripts/console-test.sh sets them)');
  process.exit(2);
}
mkdirSync(SHOTS, { recursive: true });

const results = [];
function check(cond, what) {
  if (!cond) {
    throw new Error(`FAILED: ${what}`);
  }
  results.push(what);
  console.log(`  ok  ${what}`);
}

async function api(method, p, body, token = ADMIN) {
  const r = await fetch(BASE + p, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15000),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}

async function until(what, fn, seconds) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${seconds} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: false });
}

// Anything the browser complains about (a Content-Security-Policy violation, a failed
// script) fails the run at the end.
const complaints = [];
function watchConsole(page) {
  page.on('console', (m) => {
    if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) {
      complaints.push(m.text());
    }
  });
  page.on('pageerror', (e) => complaints.push(String(e)));
}

async function signIn(browser, token) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  watchConsole(page);
  await page.goto(`${BASE}/ui/`);
  await page.getByLabel('Management token').fill(token);
  await page.keyboard.press('Enter'); // keyboard only: the form submits without a mouse
  await page.waitForURL(`${BASE}/ui/fleet`);
  return { context, page };
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    // playwright gives every launch a fresh, empty profile directory of its own (the
    // --user-data-dir of a plain Chromium run) and removes it on close.
    timeout: 60000,
  });
  let sim = null;
  let attacker = null;
  try {
    // 1. Sign in with the admin token (the sign-in page first, for its screenshot).
    {
      const context = await browser.newContext({ viewport: { width: 1200, height: 760 } });
      const page = await context.newPage();
      await page.goto(`${BASE}/ui/`);
      check(await page.locator('input[name="token"]').count() === 1, 'GET /ui/ shows the sign-in form with one token field');
      await shot(page, 'signin');
      await context.close();
    }
    const { context, page } = await signIn(browser, ADMIN);
    // Keyboard: the first Tab reaches the skip link, the next ones the navigation.
    await page.keyboard.press('Tab');
    check(await page.evaluate(() => document.activeElement.textContent) === 'Skip to content', 'the first Tab focuses "Skip to content"');
    await page.keyboard.press('Tab');
    check(await page.evaluate(() => document.activeElement.textContent) === 'Fleet', 'the next Tab reaches the navigation');
    const cookies = await context.cookies();
    const sc = cookies.find((c) => c.name === 'suitcase_session');
    check(sc && sc.httpOnly && sc.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');
    check(await page.evaluate(() => document.cookie) === '', 'page script cannot read the session cookie');

    // 2. A real campaign of simulated devices (suitcase sim: the real agent on simulated
    // MCUs), watched live in the console until it completes.
    const simWork = mkdtempSync(path.join(os.tmpdir(), 'suitcase-sim-ui-'));
    sim = spawn(BIN, ['sim', '--server', BASE, '--token', ADMIN, '--devices', '24',
      '--waves', '25%,100%', '--poll-cap', '2', '--timeout', '240', '--json', '--work', simWork],
    { stdio: ['ignore', 'pipe', 'inherit'] });
    let simOut = '';
    sim.stdout.on('data', (d) => { simOut += d; });
    const simDone = new Promise((resolve) => sim.on('exit', (code) => resolve(code)));
    const campaign = await until('the simulator\'s campaign', async () => {
      const r = await api('GET', '/api/v1/campaigns');
      return (r.json || []).find((c) => c.state === 'running');
    }, 120);
    await page.getByRole('link', { name: 'Campaigns' }).click();
    await page.getByRole('link', { name: campaign.name }).click();
    await page.waitForURL(`${BASE}/ui/campaigns/${campaign.id}`);
    const state = page.locator('#live [data-state]');
    const seen = new Set();
    const firstState = await state.getAttribute('data-state');
    seen.add(firstState);
    await shot(page, 'campaign-live');
    await until('the campaign to complete on the page', async () => {
      const s = await state.getAttribute('data-state').catch(() => null);
      if (s) seen.add(s);
      return s === 'completed';
    }, 240);
    const refreshed = await page.locator('#live').getAttribute('data-refreshed');
    check(refreshed !== null && Number(refreshed) >= 1, `the live view refreshed itself (${refreshed} times) without a reload`);
    check(seen.has('completed'), `the page showed the campaign go from ${firstState} to completed`);
    const succeededCells = await page.locator('table.waves tbody tr').count();
    check(succeededCells >= 2, 'per-wave progress rows are shown');
    await shot(page, 'campaign');
    const simCode = await Promise.race([simDone, new Promise((r) => setTimeout(() => r('timeout'), 60000))]);
    check(simCode === 0, `suitcase sim converged (exit ${simCode}) ${simOut.trim().slice(0, 120)}`);
    rmSync(simWork, { recursive: true, force: true });

    // 3. A device's timeline: from the campaign's device list.
    await page.locator('details summary').first().click();
    await page.locator('details table a').first().click();
    await page.waitForURL(/\/ui\/devices\//);
    check(await page.getByRole('heading', { name: /^Attempt 1 on release .*: succeeded$/ }).count() >= 1, 'the device page shows its attempt as its own timeline, succeeded');
    const steps = await page.locator('article.attempt table.timeline tbody tr').count();
    check(steps >= 5, `the attempt's timeline lists its NTIA steps (${steps})`);
    check(await page.locator('article.attempt time').first().innerText().then((t) => / UTC, /.test(t)), 'times read "YYYY-MM-DD HH:MM UTC, N ago"');
    await shot(page, 'device');

    // 4. Fleet (search), releases, keys, audit.
    await page.getByRole('link', { name: 'Fleet', exact: true }).click();
    await page.getByLabel('Name contains').fill('sim-');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/q=sim-/);
    check(await page.locator('table.devices tbody tr').count() >= 20, 'the fleet table lists the simulated devices');
    await page.goto(`${BASE}/ui/fleet`);
    await shot(page, 'fleet');
    await page.getByRole('link', { name: 'Releases' }).click();
    check(await page.locator('table.releases tbody tr').count() >= 4, 'the releases page lists the simulator\'s releases');
    await shot(page, 'releases');
    await page.getByRole('link', { name: 'Keys' }).click();
    await shot(page, 'keys');
    await page.getByRole('link', { name: 'Audit log' }).click();
    check(await page.getByText('campaign.start').count() >= 1, 'the audit log shows the campaign start');
    await shot(page, 'audit');

    // 5. A campaign created in the console, after a dry run; paused and resumed.
    const release = campaign.release_id;
    const batch = await api('POST', '/api/v1/devices/batch', Array.from({ length: 5 }, (_, i) => ({ name: `idle-${i}`, tags: ['idle'] })));
    check(batch.status === 201, 'five more devices registered (they never poll)');
    await page.getByRole('link', { name: 'Campaigns' }).click();
    await page.getByRole('link', { name: 'New campaign' }).click();
    await page.getByLabel('Name').fill('console nobody');
    await page.getByLabel('Release').selectOption(release);
    await page.getByLabel(/Devices with all of these tags/).fill('nobody-has-this-tag');
    await page.getByRole('button', { name: 'Dry run' }).click();
    check(await page.getByText('This campaign would target no device').count() === 1, 'a dry run that matches no device warns loudly');
    check(await page.getByRole('button', { name: 'Create and start' }).count() === 0, 'and offers no way to start it');
    await page.getByLabel('Name').fill('console idle');
    await page.getByLabel(/Devices with all of these tags/).fill('idle');
    await page.getByLabel(/^Waves/).fill('100%');
    await page.getByRole('button', { name: 'Dry run' }).click();
    check(await page.getByText('5 device(s) would be targeted').count() === 1, 'the dry run counts the targeted devices');
    check(await page.locator('ul.names li').count() === 5, 'and lists them');
    await page.locator('#h-dry').scrollIntoViewIfNeeded();
    await shot(page, 'campaign-new');
    await page.getByRole('button', { name: 'Create and start' }).click();
    await page.waitForURL(/\/ui\/campaigns\/cmp_/);
    const idleId = page.url().split('/').pop();
    check(await page.locator('#live [data-state="running"]').count() === 1, 'the new campaign runs');
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.locator('#live [data-state="paused"]').waitFor();
    check((await api('GET', `/api/v1/campaigns/${idleId}`)).json.state === 'paused', 'Pause paused it (the API agrees)');
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.locator('#live [data-state="running"]').waitFor();
    check((await api('GET', `/api/v1/campaigns/${idleId}`)).json.state === 'running', 'Resume resumed it');

    // 6. A forged cross-site POST: a page on another origin (same site: 127.0.0.1 on another
    // port, so that even SameSite=Strict lets the cookie through) posts the pause form
    // without the anti-forgery token.
    attacker = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><form method="post" action="${BASE}/ui/campaigns/${idleId}/pause">
        <input type="hidden" name="csrf" value="guessed"><button type="submit">Win a prize</button></form>`);
    });
    await new Promise((r) => attacker.listen(0, '127.0.0.1', r));
    const evil = `http://127.0.0.1:${attacker.address().port}/`;
    await page.goto(evil);
    const [resp] = await Promise.all([
      page.waitForResponse((r) => r.url().includes(`/ui/campaigns/${idleId}/pause`)),
      page.getByRole('button', { name: 'Win a prize' }).click(),
    ]);
    check(resp.status() === 403, `the forged cross-site POST was refused (${resp.status()})`);
    check((await api('GET', `/api/v1/campaigns/${idleId}`)).json.state === 'running', 'and the campaign still runs');

    // 7. A viewer sees no action buttons, and the server refuses its POST.
    const tok = await api('POST', '/api/v1/tokens', { name: 'console-viewer', role: 'viewer' });
    check(tok.status === 201, 'a viewer token');
    const viewer = await signIn(browser, tok.json.token);
    await viewer.page.goto(`${BASE}/ui/campaigns/${idleId}`);
    check(await viewer.page.locator('#live [data-state="running"]').count() === 1, 'the viewer sees the campaign');
    for (const name of ['Pause', 'Resume', 'Abort (cancel)', 'Start']) {
      check(await viewer.page.getByRole('button', { name }).count() === 0, `no ${name} button for a viewer`);
    }
    await viewer.page.goto(`${BASE}/ui/campaigns`);
    check(await viewer.page.getByRole('link', { name: 'New campaign' }).count() === 0, 'no New campaign link for a viewer');
    const csrf = await viewer.page.locator('input[name="csrf"]').first().getAttribute('value');
    const refused = await viewer.page.request.post(`${BASE}/ui/campaigns/${idleId}/pause`, {
      form: { csrf }, headers: { origin: BASE }, maxRedirects: 0,
    });
    check(refused.status() === 403, `the server refuses the viewer's pause (${refused.status()})`);
    await viewer.context.close();

    // Clean up: abort the idle campaign from the console.
    await page.goto(`${BASE}/ui/campaigns/${idleId}`);
    await page.getByRole('button', { name: 'Abort (cancel)' }).click();
    await page.locator('#live [data-state="cancelled"]').waitFor();
    check(true, 'Abort cancelled the campaign');
    await context.close();
    // The forged-POST page is the attacker's, not the console's: its 403 is expected there.
    const ours = complaints.filter((c) => !/403/.test(c));
    check(ours.length === 0, `no console errors or CSP violations in the console's pages${ours.length ? ': ' + ours.join(' | ') : ''}`);
  } finally {
    if (sim && sim.exitCode === null) sim.kill('SIGTERM');
    if (attacker) attacker.close();
    await browser.close();
  }
  console.log(`console tests: ${results.length} checks passed`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
