/**
 * docker-compose.yml is what a fresh machine (and `npm start`, where a Docker engine answers) runs RabbitMQ
 * from: RabbitMQ 4 with the management UI and a healthcheck, PostgreSQL only on request, credentials and
 * ports from the environment with defaults that match the project's defaults.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '../../shared/config';

interface Service {
  image?: string;
  profiles?: string[];
  ports?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test?: string[] | string; interval?: string; retries?: number };
  volumes?: string[];
}

const file = fileURLToPath(new URL('../../docker-compose.yml', import.meta.url));
const compose = parse(readFileSync(file, 'utf8')) as { services: Record<string, Service>; volumes?: Record<string, unknown> };
const startScript = readFileSync(fileURLToPath(new URL('../../scripts/start.ts', import.meta.url)), 'utf8');

/** `${NAME:-default}` → [NAME, default]; anything else → undefined. */
const variable = (value: string | undefined) => {
  const match = /^\$\{(\w+):-([^}]*)\}$/.exec(value ?? '');
  return match ? { name: match[1]!, fallback: match[2]! } : undefined;
};

/** "${X:-5672}:5672" → host part variable and container port. */
const portMapping = (mapping: string) => {
  const at = mapping.lastIndexOf(':');
  return { host: variable(mapping.slice(0, at)), container: mapping.slice(at + 1) };
};

describe('docker-compose.yml', () => {
  const { rabbitmq, postgres } = compose.services;

  it('runs RabbitMQ 4.x with the management plugin, always (no profile)', () => {
    expect(rabbitmq).toBeDefined();
    expect(rabbitmq!.image).toMatch(/^rabbitmq:4(\.\d+){0,2}-management(-alpine)?$/);
    expect(rabbitmq!.profiles).toBeUndefined();
  });

  it('checks RabbitMQ health with rabbitmq-diagnostics, so `docker compose up --wait` and dependants know when it is ready', () => {
    const test = rabbitmq!.healthcheck?.test;
    expect(Array.isArray(test) ? test.join(' ') : test).toMatch(/rabbitmq-diagnostics\b.*\b(check_port_connectivity|ping|check_running)\b/);
    expect(rabbitmq!.healthcheck?.interval).toBeDefined();
    expect(rabbitmq!.healthcheck?.retries).toBeGreaterThan(0);
  });

  it('publishes AMQP (5672) and the management UI (15672) on host ports from the environment, defaulting to the same', () => {
    const ports = (rabbitmq!.ports ?? []).map(portMapping);
    const amqp = ports.find((p) => p.container === '5672');
    const management = ports.find((p) => p.container === '15672');
    expect(amqp?.host).toEqual({ name: 'RABBITMQ_PORT', fallback: '5672' });
    expect(management?.host).toEqual({ name: 'RABBITMQ_MANAGEMENT_PORT', fallback: '15672' });
  });

  it("takes RabbitMQ's user and password from the environment, defaulting to the project's default AMQP_URL credentials", () => {
    const user = variable(rabbitmq!.environment?.RABBITMQ_DEFAULT_USER);
    const password = variable(rabbitmq!.environment?.RABBITMQ_DEFAULT_PASS);
    expect(user?.name).toBe('RABBITMQ_USER');
    expect(password?.name).toBe('RABBITMQ_PASSWORD');
    const defaultBroker = new URL(loadConfig({}).amqpUrls[0]!);
    expect(user?.fallback).toBe(defaultBroker.username);
    expect(password?.fallback).toBe(defaultBroker.password);
    expect(amqpPortDefault()).toBe(defaultBroker.port);
  });

  it('is driven by npm start through the same variables it reads (port, user, password from AMQP_URL)', () => {
    expect(startScript).toContain("['compose', 'up', '-d', 'rabbitmq']");
    for (const name of ['RABBITMQ_PORT', 'RABBITMQ_USER', 'RABBITMQ_PASSWORD']) expect(startScript).toContain(`${name}:`);
  });

  it('keeps broker data in a named volume', () => {
    const volume = (rabbitmq!.volumes ?? []).find((v) => v.endsWith(':/var/lib/rabbitmq'));
    expect(volume).toBeDefined();
    expect(Object.keys(compose.volumes ?? {})).toContain(volume!.split(':')[0]);
  });

  it('offers PostgreSQL only under a profile, with credentials, database and port from the environment and defaults', () => {
    expect(postgres).toBeDefined();
    expect(postgres!.image).toMatch(/^postgres:\d+/);
    expect(postgres!.profiles).toContain('postgres');
    const env = postgres!.environment ?? {};
    expect(variable(env.POSTGRES_USER)).toEqual({ name: 'POSTGRES_USER', fallback: 'app' });
    expect(variable(env.POSTGRES_PASSWORD)).toEqual({ name: 'POSTGRES_PASSWORD', fallback: 'app' });
    expect(variable(env.POSTGRES_DB)).toEqual({ name: 'POSTGRES_DB', fallback: 'app' });
    expect((postgres!.ports ?? []).map(portMapping).find((p) => p.container === '5432')?.host).toEqual({
      name: 'POSTGRES_PORT',
      fallback: '5432',
    });
    const test = postgres!.healthcheck?.test;
    expect(Array.isArray(test) ? test.join(' ') : test).toContain('pg_isready');
  });

  it('documents the DATABASE_URL that matches the PostgreSQL defaults, and that URL is valid configuration', () => {
    const documented = /DATABASE_URL=(postgres:\/\/\S+)/.exec(readFileSync(file, 'utf8'))?.[1];
    expect(documented).toBe('postgres://app:app@127.0.0.1:5432/app');
    expect(loadConfig({ DATABASE_URL: documented }).databaseUrl).toBe(documented);
  });
});

function amqpPortDefault(): string {
  return portMapping((compose.services.rabbitmq!.ports ?? []).find((p) => p.endsWith(':5672'))!).host!.fallback;
}
