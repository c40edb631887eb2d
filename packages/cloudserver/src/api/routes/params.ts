import * as v from 'valibot'
import { errors } from '../../errors.js'

/** Validates a query or JSON body; a failure is ERR_BAD_REQUEST naming the field. */
export function parse<S extends v.GenericSchema>(schema: S, value: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, value)
  if (!result.success) {
    const issue = result.issues[0]
    throw errors.badRequest(`${v.getDotPath(issue) ?? 'input'}: ${issue.message}`)
  }
  return result.output
}

export const pathParam = v.pipe(v.string(), v.maxLength(4096))
export const count = (max: number) => v.pipe(v.string(), v.regex(/^\d{1,16}$/), v.transform(Number), v.maxValue(max))
export const flag = v.optional(v.picklist(['true', 'false']), 'false')
