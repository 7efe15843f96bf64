/**
 * The broker control the fault and trigger suites use (test/support/broker-control.ts), on this machine's broker,
 * through whichever way it chose (rabbitmqctl here; the management API where RabbitMQ runs in Docker, or with
 * BROKER_CONTROL=management): a virtual host it adds can be used, with the permissions it set, and one it deletes
 * is refused.
 */
import amqp from 'amqplib';
import { describe, expect, it } from 'vitest';
import { brokerControl } from '../support/broker-control';
import { createVhost } from '../support/vhost';

describe('broker control', () => {
  it('adds a virtual host the test user may use, and deletes it with everything in it', async () => {
    const control = await brokerControl();
    const forced = { rabbitmqctl: 'rabbitmqctl', management: 'management API and docker compose' }[process.env.BROKER_CONTROL ?? ''];
    if (forced) expect(control.via).toBe(forced);
    const vhost = await createVhost('control');
    const connection = await amqp.connect(vhost.url);
    connection.on('error', () => undefined);
    const channel = await connection.createChannel();
    await channel.assertQueue('control-check', { durable: true });
    expect((await channel.checkQueue('control-check')).messageCount).toBe(0);
    await connection.close().catch(() => undefined);

    await vhost.remove();
    // A deleted virtual host refuses the login (530 NOT_ALLOWED at connection.open, which amqplib reports so).
    await expect(amqp.connect(vhost.url)).rejects.toThrow('Expected ConnectionOpenOk; got <ConnectionClose channel:0>');
  });
});
