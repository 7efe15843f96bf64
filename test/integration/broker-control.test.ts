/**
 * The broker control the fault and trigger suites use (test/support/broker-control.ts), on this machine's broker,
 * through whichever way it chose (rabbitmqctl here; the management API where RabbitMQ runs in Docker, or with
 * BROKER_CONTROL=management): a virtual host it adds can be used, with the permissions it set, and one it deletes
 * is refused; it counts a queue's ready and unacknowledged messages; it closes the connection it is asked to
 * (found by the client's name or its port) with the reason given, and no other.
 */
import amqp, { type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { brokerControl, chooseBrokerControl } from '../support/broker-control';
import { freePort } from '../support/ports';
import { waitFor } from '../support/runner';
import { createVhost, type TestVhost } from '../support/vhost';

/** A connection that remembers why the broker closed it. */
async function connect(url: string, clientName: string): Promise<{ connection: ChannelModel; closedWith: () => string | undefined }> {
  const connection = await amqp.connect(url, { clientProperties: { connection_name: clientName } });
  let reason: string | undefined;
  connection.on('error', (error: Error) => {
    reason = error.message;
  });
  connection.on('close', (error?: Error) => {
    reason ??= error?.message ?? 'closed without an error';
  });
  return { connection, closedWith: () => reason };
}

describe('broker control', () => {
  it('adds a virtual host the test user may use, and deletes it with everything in it', async () => {
    const control = await brokerControl();
    const forced = { rabbitmqctl: 'rabbitmqctl', management: 'management API' }[process.env.BROKER_CONTROL ?? ''];
    if (forced) expect(control.via).toBe(forced);
    const vhost = await createVhost('control');
    const connection = await amqp.connect(vhost.url);
    connection.on('error', () => undefined);
    const channel = await connection.createChannel();
    await channel.assertQueue('control-check', { durable: true });
    expect((await channel.checkQueue('control-check')).messageCount).toBe(0);
    expect(await control.listQueues(vhost.name)).toEqual(['control-check']);
    await connection.close().catch(() => undefined);

    await vhost.remove();
    // A deleted virtual host refuses the login (530 NOT_ALLOWED at connection.open, which amqplib reports so).
    await expect(amqp.connect(vhost.url)).rejects.toThrow('Expected ConnectionOpenOk; got <ConnectionClose channel:0>');
  });

  it('fails, saying what to install or run, when the management API it is told to use does not answer', async () => {
    const closed = await freePort();
    await expect(
      chooseBrokerControl({ ...process.env, BROKER_CONTROL: 'management', MANAGEMENT_URL: `http://127.0.0.1:${closed}` }),
    ).rejects.toThrow(
      new RegExp(
        `^Cannot control the broker: rabbitmqctl does not answer here and the management API at http://127\\.0\\.0\\.1:${closed} does not either .*` +
          'Install RabbitMQ \\(rabbitmqctl\\), or run it with the management plugin \\(docker compose up -d\\)\\.$',
      ),
    );
    await expect(chooseBrokerControl({ ...process.env, BROKER_CONTROL: 'docker' })).rejects.toThrow(
      "BROKER_CONTROL must be rabbitmqctl or management, not 'docker'",
    );
  });

  describe('in a virtual host of its own', () => {
    let vhost: TestVhost;
    beforeAll(async () => {
      vhost = await createVhost('control');
    });
    afterAll(async () => {
      await vhost?.remove();
    });

    it("counts a quorum queue's ready and unacknowledged messages, and refuses a queue that is not there", async () => {
      const control = await brokerControl();
      const { connection } = await connect(vhost.url, 'control-totals');
      const channel = await connection.createConfirmChannel();
      await channel.assertQueue('totals', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      for (let i = 0; i < 5; i++) channel.sendToQueue('totals', Buffer.from(`m${i}`));
      await channel.waitForConfirms();
      const consumer = await connection.createChannel();
      await consumer.prefetch(2);
      await consumer.consume('totals', () => undefined); // takes 2 and never acknowledges them
      // Both ways see the queue's metrics as of its last update (every 5 s by default).
      let totals = await control.queueTotals(vhost.name, 'totals');
      await waitFor(
        async () => {
          totals = await control.queueTotals(vhost.name, 'totals');
          return totals.ready === 3 && totals.unacked === 2;
        },
        '3 ready and 2 unacknowledged',
        20_000,
      ).catch((error: Error) => {
        throw new Error(`${error.message}; last seen ${JSON.stringify(totals)}`);
      });
      await connection.close();
      await expect(control.queueTotals(vhost.name, 'no-such-queue')).rejects.toThrow(
        `no queue 'no-such-queue' in virtual host '${vhost.name}'`,
      );
    }, 40_000);

    it('closes the connection of a given client name, or from a given port, with the reason given, and no other', async () => {
      const control = await brokerControl();
      const byName = await connect(vhost.url, `control-cut-${vhost.name}`);
      const byPort = await connect(vhost.url, `control-port-${vhost.name}`);
      const bystander = await connect(vhost.url, `control-keep-${vhost.name}`);
      const port = (byPort.connection.connection as unknown as { stream: { localPort: number } }).stream.localPort;

      expect(await control.closeConnections({ clientName: `control-cut-${vhost.name}` }, 'control test: cut by name')).toBe(1);
      await waitFor(() => byName.closedWith() !== undefined, 'the named connection to be closed');
      expect(byName.closedWith()).toContain('control test: cut by name');

      expect(await control.closeConnections({ peerPort: port }, 'control test: cut by port')).toBe(1);
      await waitFor(() => byPort.closedWith() !== undefined, 'the connection from that port to be closed');
      expect(byPort.closedWith()).toContain('control test: cut by port');

      const listed = await control.listConnections();
      expect(listed.map((c) => c.clientName)).toContain(`control-keep-${vhost.name}`);
      // Still usable, after both cuts.
      await (await bystander.connection.createChannel()).assertQueue('bystander', { durable: false });
      expect(bystander.closedWith()).toBeUndefined();
      await bystander.connection.close();
    }, 60_000);
  });
});
