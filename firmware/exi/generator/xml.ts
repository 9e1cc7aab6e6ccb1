/**
 * A minimal XML reader for the generator: enough for XSD files (elements, attributes, comments, a DOCTYPE with an
 * internal subset, CDATA). Build-time only; input is the trusted schema set, so errors are plain exceptions.
 */
export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function unescape(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (m, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return ENTITIES[e] ?? m;
  });
}

export function parseXml(text: string): XmlElement {
  let i = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  while (i < text.length) {
    const lt = text.indexOf('<', i);
    if (lt < 0) break;
    i = lt;
    if (text.startsWith('<!--', i)) {
      i = text.indexOf('-->', i) + 3;
    } else if (text.startsWith('<?', i)) {
      i = text.indexOf('?>', i) + 2;
    } else if (text.startsWith('<![CDATA[', i)) {
      i = text.indexOf(']]>', i) + 3;
    } else if (text.startsWith('<!DOCTYPE', i)) {
      // Skip to the matching '>' outside the internal subset.
      let depth = 0;
      for (; i < text.length; i++) {
        const c = text[i];
        if (c === '[') depth++;
        else if (c === ']') depth--;
        else if (c === '>' && depth === 0) break;
      }
      i++;
    } else if (text.startsWith('</', i)) {
      const gt = text.indexOf('>', i);
      const name = text.slice(i + 2, gt).trim();
      const top = stack.pop();
      if (!top || top.name !== name) throw new Error(`mismatched </${name}> at ${i}`);
      i = gt + 1;
    } else {
      const m = /^<([A-Za-z_][\w.:-]*)((?:\s+[\w.:-]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*(\/?)>/.exec(text.slice(i, i + 4000));
      if (!m) throw new Error(`bad tag at ${i}: ${text.slice(i, i + 40)}`);
      const attrs: Record<string, string> = {};
      for (const a of m[2]!.matchAll(/([\w.:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')/g)) attrs[a[1]!] = unescape(a[2] ?? a[3] ?? '');
      const el: XmlElement = { name: m[1]!, attrs, children: [] };
      if (stack.length) stack[stack.length - 1]!.children.push(el);
      else root = el;
      if (!m[3]) stack.push(el);
      i += m[0].length;
    }
  }
  if (!root || stack.length) throw new Error('unterminated XML document');
  return root;
}
