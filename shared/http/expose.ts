/**
 * Marks a fastify plugin as non-encapsulating: what it decorates or hooks applies to the instance that
 * registers it (what the fastify-plugin package does, without the dependency). Route plugins stay
 * encapsulated; only the shared services, correlation and error-handling plugins are exposed.
 */
import type { FastifyPluginAsync } from 'fastify';

export function expose<Options extends Record<string, unknown>>(
  name: string,
  plugin: FastifyPluginAsync<Options>,
): FastifyPluginAsync<Options> {
  return Object.assign(plugin, { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: name });
}
