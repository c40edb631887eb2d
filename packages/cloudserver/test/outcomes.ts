import { isCloudServerError } from '../src/index.js'

/** 'ok', or the code of the CloudServerError the call threw (anything else is rethrown). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
    return 'ok'
  } catch (error) {
    if (isCloudServerError(error)) return error.code
    throw error
  }
}
