/**
 * The broker user from AMQP_USERNAME / AMQP_PASSWORD, as a deployment sets them from the Secrets Manager secret its
 * event source mappings use: they replace the user of every broker URL, percent-encoded, and the functions log in
 * with them on the real broker.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../shared/config';
import { Broker } from '../../shared/messaging';
import { AMQP_URL } from '../support/amqp';

describe('broker credentials from AMQP_USERNAME / AMQP_PASSWORD', () => {
  it('replaces the user of every URL, any character of a generated password intact', () => {
    const password = 'p@ss:w/rd#?%{}';
    const { amqpUrls } = loadConfig({
      AMQP_URLS: 'amqps://b-1.mq.eu-west-1.amazonaws.com:5671/orders,amqps://old:old@b-2.mq.eu-west-1.amazonaws.com:5671',
      AMQP_USERNAME: 'functions',
      AMQP_PASSWORD: password,
    });
    expect(amqpUrls).toHaveLength(2);
    for (const url of amqpUrls.map((u) => new URL(u))) {
      expect(decodeURIComponent(url.username)).toBe('functions');
      expect(decodeURIComponent(url.password)).toBe(password);
    }
    expect(new URL(amqpUrls[0]!).pathname).toBe('/orders');
    expect(new URL(amqpUrls[1]!).hostname).toBe('b-2.mq.eu-west-1.amazonaws.com');
    // Neither: the URLs as given.
    expect(loadConfig({ AMQP_URL: 'amqp://a:b@127.0.0.1:5672' }).amqpUrls).toEqual(['amqp://a:b@127.0.0.1:5672']);
  });

  it('refuses one without the other, naming the missing one', () => {
    expect(() => loadConfig({ AMQP_USERNAME: 'functions' })).toThrow(ConfigError);
    expect(() => loadConfig({ AMQP_USERNAME: 'functions' })).toThrow(/AMQP_PASSWORD/);
    expect(() => loadConfig({ AMQP_PASSWORD: 'secret' })).toThrow(/AMQP_USERNAME/);
  });

  it('logs in to the real broker with them, the URL carrying none', async () => {
    const given = new URL(AMQP_URL);
    const username = decodeURIComponent(given.username || 'guest');
    const password = decodeURIComponent(given.password || 'guest');
    given.username = '';
    given.password = '';
    const cfg = loadConfig({ AMQP_URL: given.toString(), AMQP_USERNAME: username, AMQP_PASSWORD: password });
    const broker = new Broker({ urls: cfg.amqpUrls, connectionName: 'broker-credentials-test', maxAttempts: 1 });
    try {
      const connection = await broker.connect();
      expect(connection).toBeDefined();
      expect(broker.status.state).toBe('connected');
    } finally {
      await broker.close();
    }
    // And a wrong password is refused: the credentials really are the ones used.
    const wrong = loadConfig({ AMQP_URL: given.toString(), AMQP_USERNAME: username, AMQP_PASSWORD: `${password}-wrong` });
    const refused = new Broker({ urls: wrong.amqpUrls, connectionName: 'broker-credentials-test-wrong', maxAttempts: 1 });
    try {
      await expect(refused.connect()).rejects.toThrow(/ACCESS_REFUSED|403/);
    } finally {
      await refused.close();
    }
  });
});
