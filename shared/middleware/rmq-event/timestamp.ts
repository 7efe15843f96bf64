/**
 * The `timestamp` format of `aws:rmq` events. AWS's poller is Java: it turns the AMQP timestamp (seconds) into a
 * java.util.Date and Gson prints it in US English medium style, in UTC: "Jan 1, 1970, 12:33:41 AM".
 * Formatted by hand because Intl output differs between runtimes (newer ICU puts U+202F before AM/PM).
 */

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;
const PATTERN = /^([A-Z][a-z]{2}) (\d{1,2}), (\d{1,6}), (\d{1,2}):(\d{2}):(\d{2})[ \u00a0\u202f](AM|PM)$/;
const pad = (n: number) => String(n).padStart(2, '0');

/** The last timestamp formatted: the messages of a burst mostly share their second. */
let last: { seconds: number; text: string } | undefined;

/** Formats AMQP timestamp `seconds` as AWS does ("MMM d, y, h:mm:ss a", UTC, plain space before AM/PM). */
export function formatAmqpTimestamp(seconds: number): string {
  if (last !== undefined && last.seconds === seconds) return last.text;
  const date = new Date(seconds * 1000);
  if (!Number.isInteger(seconds) || Number.isNaN(date.getTime())) {
    throw new RangeError(`AMQP timestamp must be whole seconds within the Date range, got ${seconds}`);
  }
  const hours = date.getUTCHours();
  const text =
    `${MONTHS[date.getUTCMonth()]} ${date.getUTCDate()}, ${date.getUTCFullYear()}, ` +
    `${hours % 12 || 12}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} ${hours < 12 ? 'AM' : 'PM'}`;
  last = { seconds, text };
  return text;
}

/**
 * The exact inverse of formatAmqpTimestamp: seconds, or undefined when `text` is not such a date.
 * Also accepts the no-break spaces newer JDKs and ICU put before AM/PM.
 */
export function parseAmqpTimestamp(text: string): number | undefined {
  const match = PATTERN.exec(text);
  if (!match) return undefined;
  const [, month, day, year, hour, minute, second, half] = match;
  const monthIndex = MONTHS.indexOf(month as (typeof MONTHS)[number]);
  if (monthIndex < 0) return undefined;
  const date = new Date(0);
  date.setUTCFullYear(Number(year), monthIndex, Number(day));
  date.setUTCHours((Number(hour) % 12) + (half === 'PM' ? 12 : 0), Number(minute), Number(second));
  const seconds = date.getTime() / 1000;
  // Rejects what Date would silently roll over ("Feb 30", "13:00:00 PM", "Jan 01").
  return formatAmqpTimestamp(seconds) === text.replace(/[\u00a0\u202f]/, ' ') ? seconds : undefined;
}
