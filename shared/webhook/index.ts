/**
 * Webhook delivery: POSTs a JSON payload with an `Idempotency-Key` header. Delivery is at least once (a
 * retry after a lost answer sends it again), so receivers dedupe on that key. Failures are classified for
 * the poison-message middleware: a refusal (4xx other than 408/425/429) is permanent, anything else transient.
 */

import { SpanKind, type TraceHeaders, traced, traceHeaders } from 'middy-rabbitmq/tracing';
import { PermanentError, TransientError } from '../contract/errors';

class WebhookRejectedError extends PermanentError {
  override readonly name = 'WebhookRejectedError';
}

class WebhookUnavailableError extends TransientError {
  override readonly name = 'WebhookUnavailableError';
}

export interface WebhookCall {
  url: string;
  payload: unknown;
  idempotencyKey: string;
  timeoutMs: number;
  correlationId?: string;
}

const RETRYABLE_4XX = new Set([408, 425, 429]);

/**
 * In a CLIENT span under the active one (the record's), whose W3C `traceparent`/`tracestate` the request carries,
 * so the receiver can continue the order's trace.
 */
export async function postWebhook(call: WebhookCall): Promise<number> {
  const attributes = { 'http.request.method': 'POST', 'server.address': URL.canParse(call.url) ? new URL(call.url).host : '' };
  return traced('POST webhook', { kind: SpanKind.CLIENT, attributes }, async (span) => {
    const status = await send(call, traceHeaders());
    span.setAttribute('http.response.status_code', status);
    return status;
  });
}

async function send(call: WebhookCall, trace: TraceHeaders): Promise<number> {
  let response: Response;
  try {
    response = await fetch(call.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'idempotency-key': call.idempotencyKey,
        ...(call.correlationId ? { 'x-correlation-id': call.correlationId } : {}),
        ...trace,
      },
      body: JSON.stringify(call.payload),
      signal: AbortSignal.timeout(call.timeoutMs),
    });
  } catch (error) {
    throw new WebhookUnavailableError(`Webhook unreachable: ${(error as Error).message}`);
  }
  await response.body?.cancel().catch(() => undefined);
  if (response.ok) return response.status;
  const Failure = response.status < 500 && !RETRYABLE_4XX.has(response.status) ? WebhookRejectedError : WebhookUnavailableError;
  throw new Failure(`Webhook answered HTTP ${response.status}`);
}
