/** `npm run topology`: declares the exchanges and queues on the configured broker and lists them. */

import { Broker } from 'middy-rabbitmq/amqp';
import { ConfigError, config, redactUrl } from '../config';
import { topologyOptions } from './index';
import { declareTopology } from './topology';

async function main(): Promise<void> {
  const cfg = config();
  const broker = new Broker({ urls: cfg.amqpUrls, connectionName: 'topology-cli', maxAttempts: cfg.amqpUrls.length });
  try {
    const declared = await declareTopology(await broker.connect(), topologyOptions(cfg));
    console.log(`Topology declared on ${cfg.amqpUrls.map(redactUrl).join(', ')}`);
    for (const exchange of declared.exchanges) console.log(`  exchange ${exchange.name} (${exchange.type})`);
    for (const queue of declared.queues) {
      const from = queue.bindings.map((b) => `${b.exchange}/${b.pattern || JSON.stringify(b.arguments)}`).join(', ');
      console.log(`  queue    ${queue.name} <- ${from}`);
    }
  } finally {
    await broker.close();
  }
}

main().catch((error: unknown) => {
  const message = error instanceof ConfigError || error instanceof Error ? error.message : String(error);
  console.error(`topology: ${message}`);
  process.exit(1);
});
