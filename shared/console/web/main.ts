/**
 * The console in the browser: plain DOM, no framework. Everything that comes from the server (and so possibly
 * from a message) is put on the page as text (textContent, text nodes), never as HTML. The admin token is asked
 * once, kept in sessionStorage, and sent as `Authorization: Bearer` on every request; it never goes in a URL.
 * Live data is polled with fetch (server-sent events cannot carry that header).
 */

const TOKEN_KEY = 'rabbit-functions.console.admin-token';
const FLOW_EVERY_MS = 3_000;
const JOB_EVERY_MS = 500;
const SAMPLE = 20;
const ERROR_CLASSES = ['permanent', 'transient', 'unrepresentable', 'payload-too-large', 'broker', 'unknown'];

// ---------------------------------------------------------------------------------------------- helpers

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`console: no #${id} in the page`);
  return element as T;
};

type Child = Node | string | number | null | undefined | false;

/** An element with attributes and children; strings become text nodes (never parsed as HTML). */
function h(tag: string, attributes: Record<string, string | boolean | undefined> = {}, ...children: Child[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
  return element;
}

const text = (value: unknown): string => (value === null || value === undefined || value === '' ? '–' : String(value));
const cell = (value: unknown, numeric = false) => h('td', numeric ? { class: 'num' } : {}, text(value));
const time = (iso: string | null | undefined) => (iso ? new Date(iso).toLocaleString() : '–');

function setRows(tbody: HTMLElement, rows: HTMLElement[], empty: string, columns: number): void {
  tbody.replaceChildren(...(rows.length > 0 ? rows : [h('tr', {}, h('td', { colspan: String(columns), class: 'muted' }, empty))]));
}

// ---------------------------------------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let token: string | null = sessionStorage.getItem(TOKEN_KEY);

/** JSON from the server with the token; ApiError with the problem's detail otherwise; a 401 signs out. */
async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  headers.set('accept', 'application/json');
  if (token) headers.set('authorization', `Bearer ${token}`);
  if (init.body) headers.set('content-type', 'application/json');
  const response = await fetch(path, { ...init, headers, cache: 'no-store', credentials: 'omit' });
  const body = (await response.json().catch(() => null)) as (T & { detail?: string; title?: string }) | null;
  if (!response.ok) {
    const message = `${response.status}: ${body?.detail ?? body?.title ?? response.statusText}`;
    if (response.status === 401) signOut(`The server refused the token (${message}).`);
    throw new ApiError(response.status, message);
  }
  return body as T;
}

const post = <T>(path: string, body: unknown) => api<T>(path, { method: 'POST', body: JSON.stringify(body) });

// ---------------------------------------------------------------------------------------------- sign in

function signOut(reason = ''): void {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  stopPolling();
  $('app').hidden = true;
  $('sign-out').hidden = true;
  $('who').textContent = '';
  $('login').hidden = false;
  $('login-error').textContent = reason;
  $<HTMLInputElement>('token').focus();
}

async function signIn(candidate: string): Promise<void> {
  token = candidate;
  try {
    await api('/console/api/session');
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) signOut(`Could not reach the console's API: ${(error as Error).message}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $('login').hidden = true;
  $('login-error').textContent = '';
  $('app').hidden = false;
  $('sign-out').hidden = false;
  $('who').textContent = 'Signed in with the admin token (kept for this tab only).';
  select('flow');
  startPolling();
}

// ---------------------------------------------------------------------------------------------- tabs

const VIEWS = ['flow', 'dead', 'redrive', 'orders'] as const;
type View = (typeof VIEWS)[number];

function select(view: View): void {
  for (const name of VIEWS) {
    const tab = $(`tab-${name}`);
    const selected = name === view;
    tab.setAttribute('aria-selected', String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(`view-${name}`).hidden = !selected;
  }
  if (view === 'dead') void loadDeadLetters();
  if (view === 'orders') void loadOrders();
  if (view === 'redrive') fillQueueChoices();
}

function setUpTabs(): void {
  for (const name of VIEWS) $(`tab-${name}`).addEventListener('click', () => select(name));
  // Arrow keys move between tabs, as the ARIA tabs pattern has it.
  $('tabs').addEventListener('keydown', (event) => {
    const current = VIEWS.findIndex((name) => $(`tab-${name}`).getAttribute('aria-selected') === 'true');
    const step = event.key === 'ArrowRight' ? 1 : event.key === 'ArrowLeft' ? -1 : 0;
    if (step === 0) return;
    const next = VIEWS[(current + step + VIEWS.length) % VIEWS.length]!;
    select(next);
    $(`tab-${next}`).focus();
  });
}

// ---------------------------------------------------------------------------------------------- flow

interface QueueStatus {
  name: string;
  kind: string;
  exists: boolean;
  messages: number | null;
  ready: number | null;
  unacknowledged: number | null;
  consumers: number | null;
  rates: { publish: number; deliver: number; ack: number } | null;
}
interface Mapping {
  Queues: string[];
  State: string;
  StateTransitionReason: string;
  LastProcessingResult: string;
  Local: {
    functionKey: string;
    pid: number;
    stateTransitionDetail?: string;
    counts: { received: number; acked: number; requeued: number; deadLettered: number; invocations: number; failedInvocations: number };
  };
}
interface Flow {
  queues: { source: string; detail: string; vhost: string; queues: QueueStatus[] } | null;
  queuesError: string | null;
  triggers: { directory: string; runners: unknown[]; EventSourceMappings: Mapping[] };
  at: string;
}

let knownDlqs: string[] = [];
let flowTimer: number | undefined;

const rate = (value: number | undefined) => (value === undefined ? '–' : value.toFixed(value < 10 ? 1 : 0));

function renderFlow(flow: Flow): void {
  const queues = flow.queues?.queues ?? [];
  $('flow-source').textContent = flow.queues
    ? `Queues of vhost ${flow.queues.vhost} from ${flow.queues.detail}. Updated ${time(flow.at)}.`
    : `Queues unavailable: ${flow.queuesError ?? 'no answer'}`;
  setRows(
    $('queues').querySelector('tbody')!,
    queues.map((q) =>
      h(
        'tr',
        { 'data-queue': q.name },
        h('th', { scope: 'row' }, q.name),
        cell(q.kind),
        ...(q.exists
          ? [
              cell(q.messages, true),
              cell(q.ready, true),
              cell(q.unacknowledged, true),
              cell(q.consumers, true),
              cell(rate(q.rates?.publish), true),
              cell(rate(q.rates?.deliver), true),
              cell(rate(q.rates?.ack), true),
            ]
          : [h('td', { colspan: '7', class: 'muted' }, 'not declared')]),
      ),
    ),
    'No queue figures.',
    9,
  );
  const mappings = flow.triggers.EventSourceMappings;
  setRows(
    $('triggers').querySelector('tbody')!,
    mappings.map((m) =>
      h(
        'tr',
        {},
        h('th', { scope: 'row' }, `${m.Local.functionKey} (pid ${m.Local.pid})`),
        cell(m.Queues.join(', ')),
        h('td', {}, m.State, m.State === 'Failed' ? ` (${m.StateTransitionReason}: ${m.Local.stateTransitionDetail ?? ''})` : ''),
        cell(m.LastProcessingResult),
        cell(m.Local.counts.received, true),
        cell(m.Local.counts.acked, true),
        cell(m.Local.counts.requeued, true),
        cell(m.Local.counts.deadLettered, true),
        cell(m.Local.counts.invocations, true),
        cell(m.Local.counts.failedInvocations, true),
      ),
    ),
    'No trigger runs on this machine (deployed, the triggers are AWS event source mappings).',
    10,
  );
  $('triggers-note').textContent = `Runner status files in ${flow.triggers.directory}.`;
  const dlqs = queues.filter((q) => q.kind === 'dead letters' && q.exists).map((q) => q.name);
  if (dlqs.length > 0) knownDlqs = dlqs;
}

async function refreshFlow(): Promise<void> {
  try {
    renderFlow(await api<Flow>('/console/api/flow'));
  } catch (error) {
    if (token) $('flow-source').textContent = `Could not refresh: ${(error as Error).message}`;
  }
}

function startPolling(): void {
  stopPolling();
  void refreshFlow();
  flowTimer = window.setInterval(() => {
    if (!document.hidden) void refreshFlow();
  }, FLOW_EVERY_MS);
}

function stopPolling(): void {
  if (flowTimer !== undefined) window.clearInterval(flowTimer);
  flowTimer = undefined;
}

// ---------------------------------------------------------------------------------------------- dead letters

interface Summary {
  position: number;
  messageId: string | null;
  type: string | null;
  errorClass: string;
  errorName: string | null;
  errorMessage: string | null;
  attempts: number | null;
  originalQueue: string | null;
  firstFailedAt: string | null;
  redriveCount: number;
  death: { reason: string; queue: string; count: number } | null;
  wouldPark: boolean;
  bodyBytes: number;
  bodyPreview: string;
}
interface Inspection {
  queue: string;
  /** The work queue a DLQ belongs to; null for the parking lot. */
  source: string | null;
  status: 'ok' | 'busy' | 'missing';
  depth: number | null;
  sample: Summary[];
}
interface Listing {
  dlqs: Inspection[];
  parkingLot: Omit<Inspection, 'source'>;
}

function fillClassChoices(select: HTMLSelectElement): void {
  for (const name of ERROR_CLASSES) select.append(h('option', { value: name }, name));
}

function summaryRow(dlq: string, s: Summary, parked: boolean): HTMLElement {
  const reason = s.errorClass === 'broker' && s.death ? `${s.death.reason} in ${s.death.queue} ×${s.death.count}` : s.errorMessage;
  const show = h('button', { type: 'button', 'aria-label': `Show message ${s.position} of ${dlq}` }, 'Show');
  show.addEventListener('click', () => void showMessage(dlq, s));
  return h(
    'tr',
    { 'data-message-id': s.messageId ?? '' },
    cell(s.position, true),
    h('td', { class: 'preview' }, text(s.messageId)),
    cell(s.errorClass),
    cell(s.errorName),
    h('td', { class: 'reason' }, text(reason)),
    cell(s.attempts, true),
    cell(time(s.firstFailedAt)),
    cell(s.originalQueue),
    cell(s.wouldPark && !parked ? `${s.redriveCount} (would be parked)` : s.redriveCount, true),
    h('td', { class: 'preview body-preview' }, text(s.bodyPreview)),
    h('td', {}, show),
  );
}

async function loadDeadLetters(): Promise<void> {
  const status = $('dead-status');
  const list = $('dead-list');
  status.textContent = 'Reading the DLQs…';
  const errorClass = $<HTMLSelectElement>('dead-class').value;
  const errorName = $<HTMLInputElement>('dead-name').value.trim();
  let listing: Listing;
  try {
    listing = await api<Listing>(`/dlq?sample=${SAMPLE}`);
  } catch (error) {
    status.textContent = `Could not read the DLQs: ${(error as Error).message}`;
    return;
  }
  const queues: Inspection[] = [...listing.dlqs, { ...listing.parkingLot, source: null }];
  const sections = queues.map((dlq) => {
    const shown = dlq.sample.filter((s) => (!errorClass || s.errorClass === errorClass) && (!errorName || s.errorName === errorName));
    const state =
      dlq.status === 'ok'
        ? `${dlq.depth} message(s)`
        : dlq.status === 'busy'
          ? 'busy: a redrive or another reader has it; depth unknown until it ends'
          : 'not declared';
    const more = dlq.depth !== null && dlq.depth > dlq.sample.length ? ` (the first ${dlq.sample.length} shown)` : '';
    const table = h(
      'table',
      { 'data-dlq': dlq.queue },
      h('caption', {}, `${dlq.queue} (${dlq.source ? `from ${dlq.source}` : 'redriven too often, not redriven again'}): ${state}${more}`),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ...[
            '#',
            'message id',
            'error class',
            'error name',
            'reason',
            'attempts',
            'first failed',
            'original queue',
            'redriven',
            'body',
            '',
          ].map((label) => h('th', { scope: 'col' }, label)),
        ),
      ),
      h('tbody', {}),
    );
    setRows(
      table.querySelector('tbody')!,
      shown.map((s) => summaryRow(dlq.queue, s, dlq.source === null)),
      dlq.sample.length > 0 ? 'No message matches the filter.' : 'Empty.',
      11,
    );
    return table;
  });
  knownDlqs = listing.dlqs.filter((d) => d.status !== 'missing').map((d) => d.queue);
  list.replaceChildren(...sections);
  status.textContent = `Read at ${new Date().toLocaleTimeString()}.`;
}

async function showMessage(dlq: string, summary: Summary): Promise<void> {
  const panel = $('message');
  const query = new URLSearchParams({ queue: dlq, position: String(summary.position) });
  if (summary.messageId) query.set('message_id', summary.messageId);
  try {
    const detail = await api<{ properties: unknown; body: string }>(`/dlq/message?${query}`);
    $('message-title').textContent = `Message ${summary.position} of ${dlq}: ${text(summary.messageId)}`;
    $('message-properties').textContent = JSON.stringify(detail.properties, null, 2);
    $('message-body').textContent = detail.body;
    panel.hidden = false;
    $('message-title').tabIndex = -1;
    $('message-title').focus();
  } catch (error) {
    $('dead-status').textContent = `Could not read the message: ${(error as Error).message}`;
  }
}

// ---------------------------------------------------------------------------------------------- redrive

interface Report {
  moved: string[];
  parked: string[];
  skipped: string[];
  failed: Array<{ id: string; error: string }>;
  targets: Record<string, number>;
  examined: number;
  depthBefore: number;
  depthAfter: number | null;
  stopped: string;
  error?: string;
}
interface Job {
  id: string;
  dlq: string;
  state: 'running' | 'cancelling' | 'completed' | 'cancelled' | 'failed';
  request: { dryRun: boolean };
  progress: { examined: number; moved: number; parked: number; skipped: number; failed: number; depthBefore: number };
  report: Report | null;
  error: string | null;
  /** Null while the job waits for the redrive job function to take it up. */
  pickedUpAt: string | null;
  statusUrl: string;
}

let runningJob: Job | undefined;
/** The settings of the last dry run that finished: the real redrive is offered for exactly these. */
let dryRunFor: string | undefined;

function fillQueueChoices(): void {
  const select = $<HTMLSelectElement>('redrive-queue');
  const current = select.value;
  const queues = knownDlqs.length > 0 ? knownDlqs : ['order-events-dlq', 'inventory-events-dlq', 'order-status-events-dlq'];
  select.replaceChildren(...queues.map((queue) => h('option', { value: queue }, queue)));
  if (queues.includes(current)) select.value = current;
}

function redriveRequest(dryRun: boolean): Record<string, unknown> {
  const limit = $<HTMLInputElement>('redrive-limit').value;
  const rateValue = $<HTMLInputElement>('redrive-rate').value;
  const errorClass = $<HTMLSelectElement>('redrive-class').value;
  const errorName = $<HTMLInputElement>('redrive-name').value.trim();
  return {
    queue: $<HTMLSelectElement>('redrive-queue').value,
    ...(limit ? { limit: Number(limit) } : {}),
    ...(rateValue ? { rate: Number(rateValue) } : {}),
    ...(errorClass ? { error_class: errorClass } : {}),
    ...(errorName ? { error_name: errorName } : {}),
    dry_run: dryRun,
  };
}

const settingsKey = () => JSON.stringify(redriveRequest(false));

function updateButtons(): void {
  const busy = runningJob !== undefined && (runningJob.state === 'running' || runningJob.state === 'cancelling');
  $<HTMLButtonElement>('dry-run').disabled = busy;
  $<HTMLButtonElement>('redrive').disabled = busy || dryRunFor !== settingsKey();
  $('cancel').hidden = !busy;
}

function ids(label: string, list: readonly string[]): HTMLElement | null {
  return list.length === 0 ? null : h('p', {}, h('strong', {}, `${label}: `), list.join(', '));
}

function renderJob(job: Job): void {
  const p = job.progress;
  const verb = job.request.dryRun ? 'would move' : 'moved';
  const report = job.report;
  const parts: Child[] = [
    h(
      'p',
      { id: 'job-state' },
      `${job.request.dryRun ? 'Dry run' : 'Redrive'} of ${job.dlq}: `,
      h('span', { class: `state-${job.state}` }, job.state),
      job.state === 'running' && job.pickedUpAt === null ? ' (waiting for the redrive job function to take it up)' : '',
    ),
    h(
      'p',
      { id: 'job-progress' },
      `examined ${p.examined} of ${p.depthBefore}; ${verb} ${p.moved}, ${job.request.dryRun ? 'would park' : 'parked'} ${p.parked}, skipped ${p.skipped}, failed ${p.failed}`,
    ),
    report
      ? h(
          'div',
          { id: 'job-report' },
          h(
            'p',
            {},
            `Stopped: ${report.stopped}.`,
            report.depthAfter === null ? '' : ` ${report.depthAfter} message(s) left in the DLQ.`,
            job.request.dryRun ? ' Nothing was changed.' : '',
          ),
          ids(verb, report.moved),
          ids(job.request.dryRun ? 'would park' : 'parked', report.parked),
          ids('skipped', report.skipped),
          ...report.failed.map((f) => h('p', { class: 'error' }, `failed ${f.id}: ${f.error}`)),
        )
      : null,
    job.error ? h('p', { class: 'error' }, job.error) : null,
  ];
  $('job').replaceChildren(...parts.filter((part): part is Node => part instanceof Node));
}

async function startRedrive(dryRun: boolean): Promise<void> {
  const settings = settingsKey();
  try {
    runningJob = await post<Job>('/dlq/redrive', redriveRequest(dryRun));
  } catch (error) {
    $('job').replaceChildren(h('p', { class: 'error', role: 'alert' }, `Not started: ${(error as Error).message}`));
    return;
  }
  renderJob(runningJob);
  updateButtons();
  while (runningJob.state === 'running' || runningJob.state === 'cancelling') {
    await new Promise((resolve) => setTimeout(resolve, JOB_EVERY_MS));
    try {
      runningJob = await api<Job>(runningJob.statusUrl);
    } catch (error) {
      $('job').append(h('p', { class: 'error' }, `Could not read the job: ${(error as Error).message}`));
      break;
    }
    renderJob(runningJob);
  }
  if (dryRun && runningJob.state === 'completed') dryRunFor = settings;
  if (!dryRun) dryRunFor = undefined;
  updateButtons();
  void refreshFlow();
}

async function cancelRedrive(): Promise<void> {
  if (!runningJob) return;
  try {
    runningJob = await post<Job>(`${runningJob.statusUrl}/cancel`, {});
    renderJob(runningJob);
  } catch (error) {
    $('job').append(h('p', { class: 'error' }, `Could not cancel: ${(error as Error).message}`));
  }
}

// ---------------------------------------------------------------------------------------------- orders

interface Order {
  order_id: string;
  item: string;
  quantity: number;
  status: 'accepted' | 'reserved' | 'rejected';
  reason: string | null;
  created_at: string;
  updated_at: string;
  notified_at: string | null;
  correlation_id: string | null;
}

function renderOrder(order: Order): void {
  const decided = order.status !== 'accepted';
  $('order-title').textContent = `Order ${order.order_id}`;
  $('order-timeline').replaceChildren(
    h('li', { class: 'done' }, h('strong', {}, 'accepted'), h('br'), time(order.created_at)),
    h(
      'li',
      { class: decided ? (order.status === 'rejected' ? 'rejected' : 'done') : '' },
      h('strong', {}, decided ? order.status : 'reserved / rejected'),
      h('br'),
      decided ? `${time(order.updated_at)}${order.reason ? ` (${order.reason})` : ''}` : 'waiting',
    ),
    h(
      'li',
      { class: order.notified_at ? 'done' : '' },
      h('strong', {}, 'notified'),
      h('br'),
      order.notified_at ? time(order.notified_at) : 'not yet',
    ),
  );
  const facts: Array<[string, unknown]> = [
    ['item', `${order.quantity} × ${order.item}`],
    ['status', order.status],
    ['reason', order.reason],
    ['correlation id (search the logs for it)', order.correlation_id],
  ];
  $('order-facts').replaceChildren(...facts.flatMap(([name, value]) => [h('dt', {}, name), h('dd', {}, text(value))]));
  $('order').hidden = false;
}

async function lookUpOrder(id: string): Promise<void> {
  $<HTMLInputElement>('order-id').value = id;
  try {
    renderOrder(await api<Order>(`/orders/${encodeURIComponent(id)}`));
    $('orders-status').textContent = '';
    void loadOrders();
  } catch (error) {
    $('orders-status').textContent = `No such order: ${(error as Error).message}`;
  }
}

async function loadOrders(): Promise<void> {
  try {
    const page = await api<{ orders: Order[] }>('/orders?limit=20');
    setRows(
      $('orders').querySelector('tbody')!,
      page.orders.map((order) => {
        const open = h('button', { type: 'button', class: 'link' }, order.order_id);
        open.addEventListener('click', () => void lookUpOrder(order.order_id));
        return h(
          'tr',
          { 'data-order-id': order.order_id },
          h('td', {}, open),
          cell(order.item),
          cell(order.quantity, true),
          cell(order.reason ? `${order.status} (${order.reason})` : order.status),
          cell(time(order.created_at)),
          cell(time(order.notified_at)),
        );
      }),
      'No orders yet.',
      6,
    );
  } catch (error) {
    $('orders-status').textContent = `Could not list the orders: ${(error as Error).message}`;
  }
}

// ---------------------------------------------------------------------------------------------- start

function main(): void {
  setUpTabs();
  fillClassChoices($<HTMLSelectElement>('dead-class'));
  fillClassChoices($<HTMLSelectElement>('redrive-class'));
  $('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $<HTMLInputElement>('token').value.trim();
    $<HTMLInputElement>('token').value = '';
    if (value) void signIn(value);
  });
  $('sign-out').addEventListener('click', () => signOut('Token forgotten.'));
  $('dead-filter').addEventListener('submit', (event) => {
    event.preventDefault();
    void loadDeadLetters();
  });
  $('dry-run').addEventListener('click', () => void startRedrive(true));
  $('redrive').addEventListener('click', () => void startRedrive(false));
  $('cancel').addEventListener('click', () => void cancelRedrive());
  $('redrive-form').addEventListener('input', updateButtons);
  $('redrive-form').addEventListener('change', updateButtons);
  $('redrive-form').addEventListener('submit', (event) => event.preventDefault());
  $('order-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const id = $<HTMLInputElement>('order-id').value.trim();
    if (id) void lookUpOrder(id);
  });
  $('orders-refresh').addEventListener('click', () => void loadOrders());
  if (token) void signIn(token);
  else signOut();
}

main();
