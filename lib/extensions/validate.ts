// Input rules for extensions, passwords and the SIP domain, and digest HA1 computation.

import { createHash, randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import { InvalidDomainError, InvalidExtensionError, InvalidPasswordError } from './errors';

export const PASSWORD_MIN_LENGTH = 8;
export const PASSWORD_MAX_LENGTH = 128;
/** subscriber.domain is VARCHAR(64) in Kamailio's schema. */
const DOMAIN_MAX_LENGTH = 64;

/** An extension is 2 to 10 digits: it is both the SIP username and the number dialled. */
export function validateExtension(extension: string): string {
  if (!/^[0-9]{2,10}$/.test(extension)) throw new InvalidExtensionError(extension);
  return extension;
}

/**
 * At least 8 characters, printable, no ':' (the digest HA1 is md5(user:realm:password), and
 * several phones cut the password at a colon) and no leading or trailing space.
 */
export function validatePassword(password: string): string {
  if (password.length < PASSWORD_MIN_LENGTH) throw new InvalidPasswordError(`at least ${PASSWORD_MIN_LENGTH} characters are required`);
  if (password.length > PASSWORD_MAX_LENGTH) throw new InvalidPasswordError(`at most ${PASSWORD_MAX_LENGTH} characters are allowed`);
  if (password.includes(':')) throw new InvalidPasswordError('":" is not allowed');
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(password)) throw new InvalidPasswordError('control characters are not allowed');
  if (password.trim() !== password) throw new InvalidPasswordError('leading or trailing spaces are not allowed');
  return password;
}

/** A host name or an IPv4/IPv6 address, as phones write it after the '@' (no port, no scheme). */
export function validateDomain(domain: string): string {
  if (domain.length === 0) throw new InvalidDomainError(domain, 'it is empty');
  if (domain.length > DOMAIN_MAX_LENGTH) throw new InvalidDomainError(domain, `longer than ${DOMAIN_MAX_LENGTH} characters`);
  const ipv6 = isIP(domain.replace(/^\[(.*)\]$/, '$1')) === 6;
  if (!ipv6 && !/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(domain)) {
    throw new InvalidDomainError(domain, 'expected a host name or an IP address without port');
  }
  return domain;
}

function md5(text: string): string {
  return createHash('md5').update(text, 'utf8').digest('hex');
}

/**
 * The two digest secrets auth_db compares against (RFC 2617 3.2.2.2, HA1 for MD5):
 * ha1 = md5(user:realm:password) and ha1b = md5(user@domain:realm:password), the latter for
 * phones that send the domain inside the username. The realm is the SIP domain.
 */
export function digestHa1(extension: string, domain: string, password: string): { ha1: string; ha1b: string } {
  return {
    ha1: md5(`${extension}:${domain}:${password}`),
    ha1b: md5(`${extension}@${domain}:${domain}:${password}`),
  };
}

const PASSWORD_ALPHABET = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';

/** A random password of `length` characters from an alphabet without look-alikes (0/O, 1/l/I). */
export function generatePassword(length = 16): string {
  if (!Number.isInteger(length) || length < PASSWORD_MIN_LENGTH || length > PASSWORD_MAX_LENGTH) {
    throw new RangeError(`password length must be ${PASSWORD_MIN_LENGTH}-${PASSWORD_MAX_LENGTH}`);
  }
  let out = '';
  for (let i = 0; i < length; i += 1) out += PASSWORD_ALPHABET[randomInt(PASSWORD_ALPHABET.length)];
  return out;
}
