import { entropyToMnemonic, generateMnemonic as generateBip39, validateMnemonic } from '@scure/bip39'
import { wordlist } from '@scure/bip39/wordlists/english.js'
import { InvalidMnemonicError } from '../errors.js'
import { pbkdf2Sha512 } from '../crypto.js'

/** A CloudBox recovery phrase has 24 words (256 bits of entropy). */
export const RECOVERY_PHRASE_WORDS = 24

/**
 * Lower-cases and collapses white space, so a phrase typed with stray spaces,
 * capitals or line breaks still works. Does not fix typos: the checksum catches those.
 */
export function normalizeMnemonic(mnemonic: string): string {
  return mnemonic.normalize('NFKD').trim().toLowerCase().split(/\s+/u).join(' ')
}

/** A fresh 24-word English recovery phrase from the system's secure random source. */
export function generateRecoveryPhrase(): string {
  return generateBip39(wordlist, 256)
}

/** The phrase for given entropy (tests and tools; 32 bytes gives 24 words). */
export function recoveryPhraseFromEntropy(entropy: Uint8Array): string {
  return entropyToMnemonic(entropy, wordlist)
}

/**
 * Checks a recovery phrase: 24 English BIP39 words with a valid checksum.
 * @throws {InvalidMnemonicError} with a message that says what is wrong.
 */
export function assertRecoveryPhrase(mnemonic: string): string {
  if (typeof mnemonic !== 'string') throw new TypeError('A recovery phrase must be a string')
  const normalized = normalizeMnemonic(mnemonic)
  const words = normalized === '' ? [] : normalized.split(' ')
  if (words.length !== RECOVERY_PHRASE_WORDS) {
    throw new InvalidMnemonicError(`A recovery phrase has ${RECOVERY_PHRASE_WORDS} words; this one has ${words.length}.`)
  }
  const unknown = words.filter((word) => !wordlist.includes(word))
  if (unknown.length > 0) {
    // Positions help the user find the typo without echoing secrets into logs.
    const positions = words.flatMap((word, index) => (wordlist.includes(word) ? [] : [index + 1]))
    throw new InvalidMnemonicError(`Words ${positions.join(', ')} of the recovery phrase are not in the BIP39 English list: check their spelling.`)
  }
  if (!validateMnemonic(normalized, wordlist)) {
    throw new InvalidMnemonicError('The recovery phrase\'s checksum does not match: a word is wrong or two are swapped.')
  }
  return normalized
}

/** BIP39 seed (PBKDF2-HMAC-SHA512, 2048 rounds) of any valid English phrase and optional passphrase. */
export function mnemonicToSeed(mnemonic: string, passphrase = ''): Uint8Array {
  const normalized = normalizeMnemonic(mnemonic)
  if (!validateMnemonic(normalized, wordlist)) throw new InvalidMnemonicError()
  // BIP39: password the NFKD phrase, salt "mnemonic" and the NFKD passphrase.
  return pbkdf2Sha512(normalized.normalize('NFKD'), `mnemonic${passphrase}`.normalize('NFKD'), 2048, 64)
}
