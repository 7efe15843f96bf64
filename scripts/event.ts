/**
 * `npm run event`: writes a valid `aws:rmq` event (what Lambda gets from Amazon MQ) for a queue, from message
 * bodies, so any queue function can be invoked with it (`npm run invoke`, `serverless invoke local`).
 *
 *   npm run event -- order-events body.json            # a JSON object, or an array of bodies (one message each)
 *   npm run event -- order-events '{"event_id": ...}'  # inline JSON
 *   echo '...' | npm run event -- order-events -       # from standard input
 *   options: --correlation-id ID, --header name=value (repeatable), --redelivered, --vhost /, --out file.json
 */

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { rabbitMQEventFromBodies } from 'middy-rabbitmq';
import { UsageError } from '../shared/lib/usage-error';

const usage = `Usage: npm run event -- <queue> <body.json | inline JSON | -> [--correlation-id ID] [--header name=value]... [--redelivered] [--vhost VHOST] [--out FILE]`;

function readBodies(source: string): Array<string | object> {
  const text = source === '-' ? readFileSync(0, 'utf8') : existsSync(source) ? readFileSync(source, 'utf8') : source;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    const where = source === '-' ? 'standard input' : existsSync(source) ? source : 'the inline body';
    throw new UsageError(
      `${where} is not valid JSON (${(error as Error).message}). Bodies that are not JSON: pass them as a JSON string, e.g. '"not json"'.`,
    );
  }
  const bodies = Array.isArray(parsed) ? parsed : [parsed];
  if (bodies.length === 0) throw new UsageError('No message bodies given (the array is empty)');
  return bodies.map((body) => (typeof body === 'string' || (typeof body === 'object' && body !== null) ? body : JSON.stringify(body)));
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      'correlation-id': { type: 'string' },
      header: { type: 'string', multiple: true },
      redelivered: { type: 'boolean', default: false },
      vhost: { type: 'string', default: '/' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(usage);
    return;
  }
  const [queue, source] = positionals;
  if (!queue || !source) throw new UsageError('Give a queue name and a body');
  const headers = Object.fromEntries(
    (values.header ?? []).map((pair) => {
      const at = pair.indexOf('=');
      if (at < 1) throw new UsageError(`--header expects name=value, got '${pair}'`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
  const event = rabbitMQEventFromBodies({
    queue,
    vhost: values.vhost,
    bodies: readBodies(source),
    redelivered: values.redelivered,
    properties: {
      ...(values['correlation-id'] ? { correlationId: values['correlation-id'] } : {}),
      ...(Object.keys(headers).length ? { headers } : {}),
    },
  });
  const json = `${JSON.stringify(event, null, 2)}\n`;
  if (values.out) writeFileSync(values.out, json);
  else process.stdout.write(json);
}

try {
  main();
} catch (error) {
  console.error(`event: ${(error as Error).message}`);
  if (error instanceof UsageError) console.error(usage);
  process.exit(2);
}
