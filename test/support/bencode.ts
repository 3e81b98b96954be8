// A small bencode codec for the fake NG server (RTPEngine's control protocol is
// "<cookie> <bencoded dictionary>"). Byte strings decode to UTF-8 strings.

export type BValue = string | number | BValue[] | { [key: string]: BValue };

export function bencode(value: BValue): Buffer {
  const parts: Buffer[] = [];
  const put = (v: BValue): void => {
    if (typeof v === 'string') {
      const bytes = Buffer.from(v, 'utf8');
      parts.push(Buffer.from(`${bytes.length}:`), bytes);
    } else if (typeof v === 'number') {
      if (!Number.isInteger(v)) throw new TypeError(`bencode: only integers, got ${v}`);
      parts.push(Buffer.from(`i${v}e`));
    } else if (Array.isArray(v)) {
      parts.push(Buffer.from('l'));
      v.forEach(put);
      parts.push(Buffer.from('e'));
    } else {
      parts.push(Buffer.from('d'));
      // Keys in byte order, as the format requires.
      for (const key of Object.keys(v).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
        put(key);
        put(v[key] as BValue);
      }
      parts.push(Buffer.from('e'));
    }
  };
  put(value);
  return Buffer.concat(parts);
}

/** Decodes one value starting at `start`; returns it and the offset after it. Throws on bad input. */
export function bdecode(buf: Buffer, start = 0): { value: BValue; end: number } {
  const at = (i: number): string => {
    if (i >= buf.length) throw new SyntaxError('bencode: truncated input');
    return String.fromCharCode(buf[i] as number);
  };
  const c = at(start);
  if (c === 'i') {
    const end = buf.indexOf('e', start);
    if (end < 0) throw new SyntaxError('bencode: unterminated integer');
    const text = buf.toString('latin1', start + 1, end);
    if (!/^-?\d+$/.test(text)) throw new SyntaxError(`bencode: bad integer "${text}"`);
    return { value: Number(text), end: end + 1 };
  }
  if (c === 'l' || c === 'd') {
    let i = start + 1;
    const items: BValue[] = [];
    while (at(i) !== 'e') {
      const item = bdecode(buf, i);
      items.push(item.value);
      i = item.end;
    }
    if (c === 'l') return { value: items, end: i + 1 };
    if (items.length % 2 !== 0) throw new SyntaxError('bencode: dictionary with a key and no value');
    const dict: { [key: string]: BValue } = {};
    for (let k = 0; k < items.length; k += 2) {
      const key = items[k];
      if (typeof key !== 'string') throw new SyntaxError('bencode: dictionary key is not a string');
      dict[key] = items[k + 1] as BValue;
    }
    return { value: dict, end: i + 1 };
  }
  if (c >= '0' && c <= '9') {
    const colon = buf.indexOf(':', start);
    if (colon < 0) throw new SyntaxError('bencode: string without length');
    const length = Number(buf.toString('latin1', start, colon));
    const end = colon + 1 + length;
    if (!Number.isInteger(length) || end > buf.length) throw new SyntaxError('bencode: bad string length');
    return { value: buf.toString('utf8', colon + 1, end), end };
  }
  throw new SyntaxError(`bencode: unexpected "${c}" at ${start}`);
}
