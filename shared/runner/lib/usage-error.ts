/** A command was called wrongly (unknown option, bad value): the CLIs print it with their usage and exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
