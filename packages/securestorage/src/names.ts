import { InvalidNameError } from './errors.js'

export const MAX_NAME_LENGTH = 200

/** Entry names: 1–200 characters, no control characters, not reserved (leading NUL). */
export function assertValidName(name: unknown): asserts name is string {
  // eslint-disable-next-line no-control-regex
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new InvalidNameError(`Invalid entry name ${JSON.stringify(typeof name === 'string' ? name.slice(0, 40) : name)}: use 1 to ${MAX_NAME_LENGTH} characters without control characters.`)
  }
}

export function assertBytes(value: unknown): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError('A secret value must be a Uint8Array')
}
