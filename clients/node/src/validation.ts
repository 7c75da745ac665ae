/**
 * Checks envelopes and campaigns against the JSON Schemas shipped in the
 * package (`schemas/`, copies of the repository's, generated from the node's
 * own types), so that what the node would refuse is refused before it is
 * sent, naming the field as the node's 400s do (`actions[0].url: …`).
 *
 * `maxLength` is counted in UTF-8 bytes, as the node counts. Beyond the
 * schema, two rules of the node: `pos` is Herald's own, and `fallback` needs
 * an audience naming users.
 */

import { readFileSync } from 'node:fs';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { InvalidMessage } from './errors.js';

/** The node's default `limits.max_envelope_bytes`. */
export const MAX_ENVELOPE_BYTES = 64 * 1024;

const ajv = new Ajv2020({ allErrors: true, verbose: true, strict: false });
for (const bits of ['uint32', 'uint64']) {
  ajv.addFormat(bits, { type: 'number', validate: (n: number) => Number.isSafeInteger(n) && n >= 0 });
}
ajv.removeKeyword('maxLength');
ajv.addKeyword({
  keyword: 'maxLength',
  type: 'string',
  schemaType: 'number',
  error: { message: ({ params }) => `${params.size} bytes is over the ${params.limit}-byte limit` },
  validate: function maxBytes(limit: number, data: string) {
    const size = Buffer.byteLength(data, 'utf8');
    (maxBytes as { errors?: Partial<ErrorObject>[] }).errors = [{ keyword: 'maxLength', params: { limit, size } }];
    return size <= limit;
  },
});

/**
 * The schema with its `#/$defs/…` references written out (none is
 * recursive), so that each error's schemaPath lies under the `anyOf` or
 * `oneOf` that led to it.
 */
function inline(node: unknown, defs: Record<string, unknown>): unknown {
  if (Array.isArray(node)) return node.map((n) => inline(n, defs));
  if (node === null || typeof node !== 'object') return node;
  const { $ref, $defs: _, ...rest } = node as Record<string, unknown>;
  const out = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, inline(v, defs)]));
  return typeof $ref === 'string' ? { ...(inline(defs[$ref.replace('#/$defs/', '')], defs) as object), ...out } : out;
}

function load(name: string): ValidateFunction {
  const schema = JSON.parse(readFileSync(new URL(`../schemas/${name}`, import.meta.url), 'utf8'));
  return ajv.compile(inline(schema, schema.$defs ?? {}) as object);
}

const envelope = load('envelope.schema.json');
const campaign = load('campaign.schema.json');

const WRAPPERS = new Set(['anyOf', 'oneOf']);
// In a oneOf/anyOf, these mostly say "wrong branch" rather than what is wrong.
const BRANCH_MISMATCH = new Set(['type', 'const']);
const PATTERNS: Record<string, string> = {
  '^https?://[^\\s\\\\]*$': 'must be an http(s) URL',
  '^(https?://|/(?![/\\\\]))[^\\s\\\\]*$': 'must be an http(s) URL or a path starting with /',
};
const TYPES: Record<string, string> = {
  string: 'a string', integer: 'an integer', number: 'a number', boolean: 'a boolean',
  object: 'an object', array: 'an array', null: 'null',
};

const depth = (e: ErrorObject) => (e.instancePath ? e.instancePath.split('/').length - 1 : 0);
const isWrapper = (e: ErrorObject) => WRAPPERS.has(e.keyword);
const inside = (e: ErrorObject, w: ErrorObject) => e !== w && e.schemaPath.startsWith(`${w.schemaPath}/`);

/** The errors right under wrapper `w` (or at the top), not those under a nested wrapper. */
function under(errors: ErrorObject[], w?: ErrorObject): ErrorObject[] {
  const within = w ? errors.filter((e) => inside(e, w)) : errors;
  return within.filter((e) => !within.some((x) => isWrapper(x) && inside(e, x)));
}

/** The error to report, picked as jsonschema's best_match does (so both clients agree). */
function best(all: ErrorObject[]): ErrorObject {
  const errors = all.filter((e) => e.keyword !== 'if');
  // At the top: the shallowest, and a plain error over a wrapper at the same depth.
  const topRank = (e: ErrorObject) => -depth(e) * 2 + +!isWrapper(e);
  let pick = under(errors).reduce((a, b) => (topRank(b) > topRank(a) ? b : a));
  // In a wrapper: its branches' deepest, most telling error; when two tie, the wrapper itself.
  const branchRank = (e: ErrorObject) => depth(e) * 2 + +!BRANCH_MISMATCH.has(e.keyword);
  while (isWrapper(pick)) {
    const [first, second] = under(errors, pick).sort((a, b) => branchRank(b) - branchRank(a));
    if (!first || (second && branchRank(first) === branchRank(second))) break;
    pick = first;
  }
  return pick;
}

/** `[{required: ["a"]}, {required: ["b"]}]` → `["a", "b"]`, else `[]`. */
function alternatives(schemas: unknown): string[] {
  if (!Array.isArray(schemas) || !schemas.every((s) => Array.isArray(s?.required) && s.required.length === 1)) return [];
  return schemas.map((s) => s.required[0] as string);
}

const or = (names: string[]) => (names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names.at(-1)}` : names.join(''));

function refusal(e: ErrorObject): InvalidMessage {
  const field = e.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((out, p) => (/^\d+$/.test(p) ? `${out}[${p}]` : out ? `${out}.${p}` : p), '');
  const at = (name: string) => (field ? `${field}.${name}` : name);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return new InvalidMessage(at(String(p.missingProperty)), 'required');
    case 'additionalProperties': {
      const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {}).sort();
      return new InvalidMessage(at(String(p.additionalProperty)), `unknown field${known.length ? `, expected one of ${known.join(', ')}` : ''}`);
    }
    case 'anyOf': {
      const names = alternatives(e.schema);
      if (names.length) return new InvalidMessage(at(names[0]!), `a ${names.join(' or a ')} is required`);
      break;
    }
    case 'oneOf': {
      const names = alternatives(e.schema);
      if (names.length) return new InvalidMessage(field, `needs exactly one of ${or(names)}`);
      if (field === 'to') return new InvalidMessage(field, '"all", or an object of users, segments and/or where');
      break;
    }
    case 'not': {
      const names = alternatives((e.schema as { anyOf?: unknown })?.anyOf);
      if (names.length) return new InvalidMessage(field, `must not have ${or(names)}`);
      break;
    }
    case 'enum':
      return new InvalidMessage(field, `must be one of ${(p.allowedValues as unknown[]).join(', ')}`);
    case 'const':
      return new InvalidMessage(field, `must be ${JSON.stringify(p.allowedValue)}`);
    case 'type': {
      const types = ([] as string[]).concat(p.type as string | string[]);
      return new InvalidMessage(field, `must be ${types.map((t) => TYPES[t] ?? t).join(' or ')}`);
    }
    case 'pattern':
      return new InvalidMessage(field, PATTERNS[String(p.pattern)] ?? `must match ${p.pattern}`);
    case 'maxLength':
      return new InvalidMessage(field, `${p.size} bytes is over the ${p.limit}-byte limit`);
    case 'minLength':
    case 'minItems':
    case 'minProperties':
      return new InvalidMessage(field, p.limit === 1 ? 'must not be empty' : `at least ${p.limit} entries`);
    case 'maxItems':
      return new InvalidMessage(field, `at most ${p.limit} entries`);
    case 'minimum':
      return new InvalidMessage(field, `must be at least ${p.limit}`);
  }
  return new InvalidMessage(field || 'envelope', e.message ?? 'invalid');
}

/**
 * Throws `InvalidMessage` for what the node would refuse from a publisher;
 * returns the envelope as the JSON to send.
 */
export function checkEnvelope(value: object, { maxBytes = MAX_ENVELOPE_BYTES } = {}): string {
  if (!envelope(value)) throw refusal(best(envelope.errors!));
  const e = value as { pos?: unknown; fallback?: unknown; to?: unknown };
  if ('pos' in e) throw new InvalidMessage('pos', 'set by Herald; leave it out');
  if (e.fallback && !(typeof e.to === 'object' && e.to !== null && 'users' in e.to)) {
    throw new InvalidMessage('fallback', 'only for audiences naming users');
  }
  const text = JSON.stringify(value);
  const size = Buffer.byteLength(text, 'utf8');
  if (size > maxBytes) throw new InvalidMessage('envelope', `${size} bytes is over the ${maxBytes}-byte limit`);
  return text;
}

/**
 * Throws `InvalidMessage` for a campaign the schema refuses. (Whether its CEL
 * compiles only the node can say: it answers 400 naming the field.)
 */
export function checkCampaign(value: object): void {
  if (!campaign(value)) throw refusal(best(campaign.errors!));
}
