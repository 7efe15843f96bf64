/// <reference lib="es2024.string" />
/**
 * Input validation for every edge (HTTP bodies, queries, admin requests, command lines, messages from the
 * broker): a zod schema, and a ValidationError whose issues name each bad field. Validation happens once,
 * there; the domain steps take typed input and trust it.
 */
import * as z from 'zod';
import { type FieldIssue, ValidationError } from './errors';

export { ValidationError };

/**
 * A string either database stores as sent, for every string field the API or a message carries (instead of
 * a bare `z.string()`). PostgreSQL refuses NUL in text (a 500) where SQLite keeps it, and a lone UTF-16
 * surrogate, which JSON allows, has no UTF-8 form, so both would store U+FFFD in its place. Refused here,
 * at the edge, both stores answer alike.
 */
export const storableText = () =>
  z
    .string()
    .refine((text) => !text.includes('\u0000'), 'must not contain NUL characters')
    .refine((text) => text.isWellFormed(), 'must be well-formed Unicode text (no lone surrogates)');

/**
 * What a whole value of the wrong type is told, by the type expected: `null` or `"hi"` as a body is valid
 * JSON, and "expected object, received null" reads like a fault of the parser.
 */
const ROOT_TYPE_MESSAGES: Readonly<Partial<Record<string, string>>> = { object: 'must be a JSON object' };

/** Zod issues as field issues; `root` names the field of an issue about the whole value. */
function fieldIssues(error: z.ZodError, root = 'body'): FieldIssue[] {
  return error.issues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ field: [...issue.path, key].join('.'), message: 'unknown field' }));
    }
    if (issue.path.length > 0) return [{ field: issue.path.join('.'), message: zodMessage(issue) }];
    const rootMessage = issue.code === 'invalid_type' ? ROOT_TYPE_MESSAGES[issue.expected] : undefined;
    return [{ field: root, message: rootMessage ?? zodMessage(issue) }];
  });
}

const zodMessage = (issue: z.core.$ZodIssue): string => issue.message.replace(/^Invalid input: /, '');

/** Parses `input` with `schema`, or throws ValidationError naming the fields. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, root = 'body'): z.infer<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new ValidationError(fieldIssues(result.error, root));
  return result.data;
}
