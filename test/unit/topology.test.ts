import { describe, expect, it } from 'vitest';
import { topology } from '../../shared/messaging/topology';

describe('topology per broker version', () => {
  it('declares DLQs and the parking lot without a delivery limit on RabbitMQ 4, and leaves RabbitMQ 3 alone', () => {
    const terminalArgs = (major: number) =>
      topology({ deliveryLimit: 10, retryDelaysMs: [1000], brokerMajorVersion: major })
        .queues.filter((q) => q.name.endsWith('-dlq') || q.name === 'parking-lot')
        .map((q) => q.arguments['x-delivery-limit']);
    // The three contract DLQs, dlq-redrive-jobs-dlq and the parking lot.
    expect(terminalArgs(4)).toEqual([-1, -1, -1, -1, -1]);
    expect(terminalArgs(3)).toEqual([undefined, undefined, undefined, undefined, undefined]);
    const work = topology({ deliveryLimit: 10, retryDelaysMs: [1000], brokerMajorVersion: 4 }).queues.find(
      (q) => q.name === 'order-events',
    );
    expect(work?.arguments['x-delivery-limit']).toBe(10);
  });
});
