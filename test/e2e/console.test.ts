/**
 * The web console (#15) end to end, in a real browser: Debian's chromium driven by playwright-core, against
 * the real `serverless offline start` (what `npm start` runs), in a RabbitMQ virtual host of the test's own,
 * with the management API out of reach (the console must work over AMQP alone).
 *
 * Orders are placed over HTTP; a poison message (not JSON), one carrying HTML and script, and an order whose
 * processing failed transiently (as after a database outage) are dead-lettered. The console, opened with the
 * admin token, shows all three with their reasons and the HTML as text (nothing of it runs or renders); a dry
 * run then a real redrive of the transient one moves it back, the DLQ count drops and the order reaches its
 * final status. A wrong token is refused. Screenshots of each view go to test-results/console/.
 */

import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FAILURE_HEADERS } from 'middy-rabbitmq';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventProperties, ROUTES } from '../../shared/events';
import { openStore } from '../../shared/store';
import { type Offline, startOffline } from '../support/offline';
import { makeOrders, seededRandom, storeOrders } from '../support/orders';
import { freePort } from '../support/ports';
import { waitFor } from '../support/runner';
import { createVhost, openAmqp, type TestVhost, type VhostAmqp } from '../support/vhost';

const root = fileURLToPath(new URL('../..', import.meta.url));
const shots = join(root, 'test-results/console');
const TOKEN = `console-token-${randomUUID()}`;
const DLQ = 'order-events-dlq';
const HTML = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';

/** Debian's chromium (`apt-get install chromium`; .ci/run installs it): never a browser playwright downloads. */
const chromiumPath = (): string => execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();

describe('the web console in a real browser', () => {
  const dir = mkdtempSync(join(tmpdir(), 'console-e2e-'));
  const sqlitePath = join(dir, 'app.sqlite');
  let vhost: TestVhost;
  let amqp: VhostAmqp;
  let offline: Offline;
  let browser: Browser;
  let page: Page;
  const [transient] = makeOrders(1, seededRandom(15), 'console-user');
  const htmlEventId = randomUUID();
  const placedIds: string[] = [];

  const depth = async (queue: string) => (await amqp.channel.checkQueue(queue)).messageCount;
  const shot = (name: string) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  /** The Flow view's "messages" figure of a queue. */
  const flowCount = (queue: string) => page.locator(`#queues tr[data-queue="${queue}"] td`).nth(1).textContent();

  beforeAll(async () => {
    mkdirSync(shots, { recursive: true });
    vhost = await createVhost('console');
    offline = await startOffline({
      AMQP_URL: vhost.url,
      SQLITE_PATH: sqlitePath,
      ADMIN_TOKEN: TOKEN,
      // Nothing answers there: the console must show the queues over AMQP.
      MANAGEMENT_URL: `http://127.0.0.1:${await freePort()}`,
    });
    amqp = await openAmqp(vhost.url);

    for (const item of ['Burger', 'Sushi']) {
      const placed = await fetch(`${offline.api}/order`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-correlation-id': `console-${item}` },
        body: JSON.stringify({ user_id: 'console-user', item, quantity: 1 }),
      });
      const answer = await placed.text();
      expect(placed.status, answer).toBe(202);
      placedIds.push((JSON.parse(answer) as { order_id: string }).order_id);
    }
    // A poison message and one carrying HTML, from any AMQP client: both dead-lettered as permanent failures.
    const route = ROUTES.OrderPlaced;
    amqp.channel.publish(route.exchange, route.routingKey, Buffer.from('{"event_id": not json'), {
      contentType: 'application/json',
      messageId: 'poison-1',
      type: 'OrderPlaced',
      persistent: true,
    });
    // The HTML first, so the listing's short body preview shows it.
    const htmlBody = {
      item: HTML,
      event_id: htmlEventId,
      event_type: 'OrderPlaced',
      order_id: randomUUID(),
      user_id: 'u',
      quantity: 'lots',
    };
    amqp.channel.publish(route.exchange, route.routingKey, Buffer.from(JSON.stringify(htmlBody)), {
      contentType: 'application/json',
      messageId: htmlEventId,
      type: 'OrderPlaced',
      persistent: true,
    });
    // An order whose reservation failed transiently until its retries ran out: stored, its event in the DLQ.
    const store = await openStore({ sqlitePath });
    await storeOrders(store, [transient!]);
    await store.close();
    const event = transient!.event;
    amqp.channel.sendToQueue(DLQ, Buffer.from(JSON.stringify(event)), {
      ...eventProperties(event, 'order-intake', `corr-${event.order_id}`),
      headers: {
        [FAILURE_HEADERS.errorClass]: 'transient',
        [FAILURE_HEADERS.errorName]: 'DatabaseUnavailableError',
        [FAILURE_HEADERS.errorMessage]: 'the database did not answer',
        [FAILURE_HEADERS.attempts]: 4,
        [FAILURE_HEADERS.originalQueue]: 'order-events',
        [FAILURE_HEADERS.firstFailedAt]: new Date().toISOString(),
        [FAILURE_HEADERS.lastFailedAt]: new Date().toISOString(),
      },
    });
    await amqp.channel.waitForConfirms();
    await waitFor(async () => (await depth(DLQ)) === 3, 'the three dead letters in order-events-dlq', 30_000);

    browser = await chromium.launch({
      executablePath: chromiumPath(),
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await offline?.stop();
    await amqp?.close();
    await vhost?.remove().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('serves the page with a CSP that allows no inline script, and refuses a wrong token', async () => {
    const response = await page.goto(`${offline.api}/console`);
    expect(response?.status()).toBe(200);
    const csp = response?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    await expect.poll(() => page.locator('#login').isVisible(), { timeout: 60_000 }).toBe(true);

    await page.getByLabel('Admin token').fill(`${TOKEN}-wrong`);
    await page.getByRole('button', { name: 'Open the console' }).click();
    await expect.poll(() => page.locator('#login-error').textContent(), { timeout: 60_000 }).toMatch(/refused the token \(401/);
    expect(await page.locator('#app').isVisible()).toBe(false);
    expect(await page.evaluate('sessionStorage.length')).toBe(0);
    await shot('login-refused');
  }, 90_000);

  it('opens with the token (kept in sessionStorage, never in the URL) and shows the flow over AMQP', async () => {
    await page.getByLabel('Admin token').fill(TOKEN);
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('#app').isVisible(), { timeout: 60_000 }).toBe(true);
    expect(page.url()).not.toContain(TOKEN);
    expect(await page.evaluate('Object.values(sessionStorage)')).toEqual([TOKEN]);
    await expect.poll(() => flowCount(DLQ), { timeout: 60_000 }).toBe('3');
    expect(await page.locator('#flow-source').textContent()).toMatch(/from AMQP at/);
    // Every trigger of the running serverless offline, with its state.
    await expect.poll(() => page.locator('#triggers tbody tr').count(), { timeout: 15_000 }).toBeGreaterThanOrEqual(3);
    expect(await page.locator('#triggers tbody').textContent()).toContain('Enabled');
    await shot('flow');
  }, 90_000);

  it('shows each dead letter with its reason, and the HTML one as text: nothing of it runs or renders', async () => {
    // The tabs work from the keyboard: arrow right from Flow selects Dead letters.
    await page.locator('#tab-flow').focus();
    await page.keyboard.press('ArrowRight');
    expect(await page.locator('#tab-dead').getAttribute('aria-selected')).toBe('true');
    const rows = page.locator(`table[data-dlq="${DLQ}"] tbody tr`);
    await expect.poll(() => rows.count(), { timeout: 60_000 }).toBe(3);

    const poison = page.locator(`table[data-dlq="${DLQ}"] tr[data-message-id="poison-1"]`);
    expect(await poison.locator('td').nth(2).textContent()).toBe('permanent');
    expect(await poison.locator('td.reason').textContent()).toMatch(/JSON/i);

    const html = page.locator(`table[data-dlq="${DLQ}"] tr[data-message-id="${htmlEventId}"]`);
    expect(await html.locator('td').nth(2).textContent()).toBe('permanent');
    expect(await html.locator('td.reason').textContent()).toMatch(/quantity/);
    expect(await html.locator('td.body-preview').textContent()).toContain('<img src=x onerror=');
    expect(await html.locator('td.body-preview').textContent()).toContain('<script>');

    const transientRow = page.locator(`table[data-dlq="${DLQ}"] tr[data-message-id="${transient!.event_id}"]`);
    expect(await transientRow.locator('td').nth(2).textContent()).toBe('transient');
    expect(await transientRow.locator('td.reason').textContent()).toBe('the database did not answer');

    // The whole message on demand, still as text.
    await html.getByRole('button', { name: /Show message/ }).click();
    await expect
      .poll(() => page.locator('#message-body').textContent(), { timeout: 15_000 })
      .toContain('<script>window.__pwned=2</script>');
    expect(await page.locator('#view-dead img, #view-dead script').count()).toBe(0);
    expect(await page.evaluate('window.__pwned')).toBeUndefined();
    await shot('dead-letters');
    // Reading changed nothing.
    await waitFor(async () => (await depth(DLQ)) === 3, 'the listed messages back in the DLQ');
  }, 90_000);

  it('runs a dry run, then redrives one message: the DLQ count drops and the order reaches its status', async () => {
    await page.getByRole('tab', { name: 'Redrive' }).click();
    await page.getByLabel('DLQ', { exact: true }).selectOption(DLQ);
    await page.getByLabel('Limit (messages)').fill('1');
    await page.locator('#view-redrive').getByLabel('Error class').selectOption('transient');
    expect(await page.getByRole('button', { name: 'Redrive', exact: true }).isDisabled()).toBe(true);

    await page.getByRole('button', { name: 'Dry run' }).click();
    await expect
      .poll(() => page.locator('#job-state').textContent(), { timeout: 20_000 })
      .toMatch(/Dry run of order-events-dlq: completed/);
    expect(await page.locator('#job-report').textContent()).toContain(`would move: ${transient!.event_id}`);
    expect(await page.locator('#job-progress').textContent()).toMatch(/would move 1, would park 0/);
    expect(await depth(DLQ)).toBe(3);
    await shot('redrive-dry-run');

    const redrive = page.getByRole('button', { name: 'Redrive', exact: true });
    expect(await redrive.isDisabled()).toBe(false);
    await redrive.click();
    await expect
      .poll(() => page.locator('#job-state').textContent(), { timeout: 20_000 })
      .toMatch(/Redrive of order-events-dlq: completed/);
    expect(await page.locator('#job-report').textContent()).toContain(`moved: ${transient!.event_id}`);
    await shot('redrive');

    await page.getByRole('tab', { name: 'Flow' }).click();
    await expect.poll(() => flowCount(DLQ), { timeout: 15_000 }).toBe('2');
    await shot('flow-after-redrive');

    // The redriven order went through inventory (its item is not on the menu), the projection and notification.
    await page.getByRole('tab', { name: 'Orders' }).click();
    await page.getByLabel('Order id').fill(transient!.order_id);
    await expect
      .poll(
        async () => {
          await page.getByRole('button', { name: 'Look up' }).click();
          const timeline = (await page.locator('#order-timeline').textContent()) ?? '';
          return /rejected/.test(timeline) && !/not yet/.test(timeline);
        },
        { timeout: 30_000, interval: 1_000 },
      )
      .toBe(true);
    expect(await page.locator('#order-timeline').textContent()).toMatch(/accepted.*rejected.*\(unknown_item\).*notified/s);
    expect(await page.locator('#orders tbody tr').count()).toBeGreaterThanOrEqual(3);
    await shot('orders');
    // An order placed over HTTP: reserved from the menu, with the correlation id to search the logs for.
    await page.locator(`#orders tr[data-order-id="${placedIds[0]}"]`).getByRole('button').click();
    await expect.poll(() => page.locator('#order-facts').textContent(), { timeout: 15_000 }).toContain('console-Burger');
    expect(await page.locator('#order-timeline').textContent()).toMatch(/accepted.*reserved/s);
  }, 90_000);
});
