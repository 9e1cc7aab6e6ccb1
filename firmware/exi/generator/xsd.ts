import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseXml, type XmlElement } from './xml.ts';

/**
 * XSD loader: reads a schema set (following xs:import/xs:include) into a small component model — global elements,
 * named complex and simple types, particles — with every QName resolved to `uri|local`. Only what the ISO 15118,
 * DIN 70121 and xmldsig schemas use is supported; anything else fails loudly at generation time.
 */
export const XS = 'http://www.w3.org/2001/XMLSchema';

export function qkey(uri: string, local: string): string {
  return `${uri}|${local}`;
}
export function qlocal(key: string): string {
  return key.slice(key.indexOf('|') + 1);
}
export function quri(key: string): string {
  return key.slice(0, key.indexOf('|'));
}

export interface ElementDecl {
  key: string; // uri|local of the element name
  global: boolean;
  typeKey?: string; // named type
  anonType?: TypeDef;
  abstract: boolean;
  substitutionGroup?: string;
  id: number; // unique declaration id
}

export type Particle =
  | { kind: 'element'; decl: ElementDecl; min: number; max: number }
  | { kind: 'seq' | 'choice'; items: Particle[]; min: number; max: number }
  | { kind: 'any'; namespace: string; min: number; max: number };

export interface AttrUse {
  key: string;
  typeKey?: string;
  anonType?: SimpleTypeDef;
  required: boolean;
}

export interface ComplexTypeDef {
  kind: 'complex';
  key: string;
  baseKey?: string;
  derivation?: 'extension' | 'restriction';
  simpleContent: boolean;
  attrs: AttrUse[];
  particle?: Particle; // own content (for extension: the added part)
  mixed: boolean;
}

export interface SimpleTypeDef {
  kind: 'simple';
  key: string;
  baseKey?: string; // restriction base
  anonBase?: SimpleTypeDef;
  enumeration: string[];
  minInclusive?: bigint;
  maxInclusive?: bigint;
  minExclusive?: bigint;
  maxExclusive?: bigint;
  maxLength?: number;
  length?: number;
  list?: boolean;
}

export type TypeDef = ComplexTypeDef | SimpleTypeDef;

export class SchemaSet {
  readonly elements = new Map<string, ElementDecl>();
  readonly types = new Map<string, TypeDef>();
  readonly allElementDecls: ElementDecl[] = [];
  private readonly loaded = new Set<string>();
  private anon = 0;

  load(file: string): void {
    const path = resolve(file);
    if (this.loaded.has(path)) return;
    this.loaded.add(path);
    const root = parseXml(readFileSync(path, 'utf8'));
    const ctx = new FileContext(root);
    for (const child of root.children) {
      const tag = ctx.local(child.name);
      if (tag === 'import' || tag === 'include') {
        const loc = child.attrs.schemaLocation;
        if (loc) this.load(resolve(dirname(path), loc));
      }
    }
    for (const child of root.children) {
      const tag = ctx.local(child.name);
      if (tag === 'element') {
        const decl = this.elementDecl(ctx, child, true);
        this.elements.set(decl.key, decl);
      } else if (tag === 'complexType') {
        const t = this.complexType(ctx, child, qkey(ctx.tns, child.attrs.name!));
        this.types.set(t.key, t);
      } else if (tag === 'simpleType') {
        const t = this.simpleType(ctx, child, qkey(ctx.tns, child.attrs.name!));
        this.types.set(t.key, t);
      } else if (['import', 'include', 'annotation'].includes(tag)) {
        // handled above / documentation
      } else {
        throw new Error(`unsupported top-level xs:${tag} in ${path}`);
      }
    }
  }

  private elementDecl(ctx: FileContext, el: XmlElement, global: boolean): ElementDecl {
    const qualified = global || (el.attrs.form ?? ctx.elementFormDefault) === 'qualified';
    const key = qkey(qualified ? ctx.tns : '', el.attrs.name!);
    const decl: ElementDecl = { key, global, abstract: el.attrs.abstract === 'true', id: this.allElementDecls.length };
    this.allElementDecls.push(decl);
    if (el.attrs.type) decl.typeKey = ctx.resolve(el.attrs.type);
    if (el.attrs.substitutionGroup) decl.substitutionGroup = ctx.resolve(el.attrs.substitutionGroup);
    for (const c of el.children) {
      const tag = ctx.local(c.name);
      if (tag === 'complexType') decl.anonType = this.complexType(ctx, c, `#anon${this.anon++}:${el.attrs.name}`);
      else if (tag === 'simpleType') decl.anonType = this.simpleType(ctx, c, `#anon${this.anon++}:${el.attrs.name}`);
    }
    if (!decl.typeKey && !decl.anonType) decl.typeKey = qkey(XS, 'anyType');
    return decl;
  }

  private complexType(ctx: FileContext, el: XmlElement, key: string): ComplexTypeDef {
    const t: ComplexTypeDef = { kind: 'complex', key, simpleContent: false, attrs: [], mixed: el.attrs.mixed === 'true' };
    const body = (node: XmlElement): void => {
      for (const c of node.children) {
        const tag = ctx.local(c.name);
        if (tag === 'sequence' || tag === 'choice' || tag === 'element' || tag === 'any') t.particle = this.particle(ctx, c);
        else if (tag === 'attribute') t.attrs.push(this.attribute(ctx, c));
        else if (tag === 'complexContent' || tag === 'simpleContent') {
          if (tag === 'simpleContent') t.simpleContent = true;
          if (c.attrs.mixed === 'true') t.mixed = true;
          for (const d of c.children) {
            const dtag = ctx.local(d.name);
            if (dtag === 'extension' || dtag === 'restriction') {
              t.derivation = dtag;
              t.baseKey = ctx.resolve(d.attrs.base!);
              body(d);
            } else if (dtag !== 'annotation') throw new Error(`unsupported xs:${dtag} in ${key}`);
          }
        } else if (tag === 'annotation') {
          // documentation
        } else if (tag === 'anyAttribute') {
          throw new Error(`xs:anyAttribute not supported (${key})`);
        } else throw new Error(`unsupported xs:${tag} in complexType ${key}`);
      }
    };
    body(el);
    return t;
  }

  private attribute(ctx: FileContext, el: XmlElement): AttrUse {
    if (el.attrs.ref) throw new Error('attribute ref not supported');
    const qualified = (el.attrs.form ?? ctx.attributeFormDefault) === 'qualified';
    const a: AttrUse = { key: qkey(qualified ? ctx.tns : '', el.attrs.name!), required: el.attrs.use === 'required' };
    if (el.attrs.type) a.typeKey = ctx.resolve(el.attrs.type);
    for (const c of el.children) {
      if (ctx.local(c.name) === 'simpleType') a.anonType = this.simpleType(ctx, c, `#anon${this.anon++}:@${el.attrs.name}`);
    }
    if (!a.typeKey && !a.anonType) a.typeKey = qkey(XS, 'string');
    return a;
  }

  private occurs(el: XmlElement): { min: number; max: number } {
    const min = el.attrs.minOccurs === undefined ? 1 : Number(el.attrs.minOccurs);
    const max = el.attrs.maxOccurs === undefined ? 1 : el.attrs.maxOccurs === 'unbounded' ? Infinity : Number(el.attrs.maxOccurs);
    return { min, max };
  }

  private particle(ctx: FileContext, el: XmlElement): Particle {
    const tag = ctx.local(el.name);
    const occ = this.occurs(el);
    if (tag === 'element') {
      if (el.attrs.ref) {
        const ref = ctx.resolve(el.attrs.ref);
        return { kind: 'element', decl: { key: ref, global: true, abstract: false, id: -1, typeKey: `@ref:${ref}` }, ...occ };
      }
      return { kind: 'element', decl: this.elementDecl(ctx, el, false), ...occ };
    }
    if (tag === 'any') return { kind: 'any', namespace: el.attrs.namespace ?? '##any', ...occ };
    if (tag === 'sequence' || tag === 'choice') {
      const items: Particle[] = [];
      for (const c of el.children) {
        if (ctx.local(c.name) !== 'annotation') items.push(this.particle(ctx, c));
      }
      return { kind: tag === 'sequence' ? 'seq' : 'choice', items, ...occ };
    }
    throw new Error(`unsupported particle xs:${tag}`);
  }

  private simpleType(ctx: FileContext, el: XmlElement, key: string): SimpleTypeDef {
    const t: SimpleTypeDef = { kind: 'simple', key, enumeration: [] };
    for (const c of el.children) {
      const tag = ctx.local(c.name);
      if (tag === 'restriction') {
        if (c.attrs.base) t.baseKey = ctx.resolve(c.attrs.base);
        for (const f of c.children) {
          const ftag = ctx.local(f.name);
          const v = f.attrs.value!;
          switch (ftag) {
            case 'enumeration': t.enumeration.push(v); break;
            case 'minInclusive': t.minInclusive = BigInt(v); break;
            case 'maxInclusive': t.maxInclusive = BigInt(v); break;
            case 'minExclusive': t.minExclusive = BigInt(v); break;
            case 'maxExclusive': t.maxExclusive = BigInt(v); break;
            case 'maxLength': t.maxLength = Number(v); break;
            case 'length': t.length = Number(v); break;
            case 'minLength': case 'annotation': case 'whiteSpace': break;
            case 'simpleType': t.anonBase = this.simpleType(ctx, f, `#anon${this.anon++}`); break;
            case 'pattern': throw new Error(`pattern facet not supported (${key})`);
            default: throw new Error(`unsupported facet ${ftag} in ${key}`);
          }
        }
      } else if (tag === 'list' || tag === 'union') {
        throw new Error(`xs:${tag} not supported (${key})`);
      } else if (tag !== 'annotation') throw new Error(`unsupported xs:${tag} in simpleType ${key}`);
    }
    return t;
  }

  /** The global element a `ref` points to. */
  global(key: string): ElementDecl {
    const d = this.elements.get(key);
    if (!d) throw new Error(`unknown global element ${key}`);
    return d;
  }

  /** Resolves an element particle's declaration (refs point at globals). */
  resolveDecl(decl: ElementDecl): ElementDecl {
    return decl.typeKey?.startsWith('@ref:') ? this.global(decl.key) : decl;
  }

  /**
   * Members of a substitution group headed by `head`, the head included. Abstract declarations are kept: the
   * reference codecs (EXIficient, and cbexigen/OpenV2G after it) assign them event codes too (ISO-2 BodyElement).
   */
  substitutionMembers(head: ElementDecl): ElementDecl[] {
    const out: ElementDecl[] = [];
    const visit = (d: ElementDecl): void => {
      out.push(d);
      for (const e of this.elements.values()) if (e.substitutionGroup === d.key) visit(e);
    };
    visit(head);
    return out;
  }

  hasSubstitutes(head: ElementDecl): boolean {
    for (const e of this.elements.values()) if (e.substitutionGroup === head.key) return true;
    return false;
  }
}

class FileContext {
  readonly tns: string;
  readonly elementFormDefault: string;
  readonly attributeFormDefault: string;
  private readonly prefixes = new Map<string, string>();
  private readonly xsPrefix: string;

  constructor(root: XmlElement) {
    this.tns = root.attrs.targetNamespace ?? '';
    this.elementFormDefault = root.attrs.elementFormDefault ?? 'unqualified';
    this.attributeFormDefault = root.attrs.attributeFormDefault ?? 'unqualified';
    for (const [k, v] of Object.entries(root.attrs)) {
      if (k === 'xmlns') this.prefixes.set('', v);
      else if (k.startsWith('xmlns:')) this.prefixes.set(k.slice(6), v);
    }
    const colon = root.name.indexOf(':');
    this.xsPrefix = colon < 0 ? '' : root.name.slice(0, colon);
  }

  local(name: string): string {
    const colon = name.indexOf(':');
    const prefix = colon < 0 ? '' : name.slice(0, colon);
    if (prefix !== this.xsPrefix && this.prefixes.get(prefix) !== XS) throw new Error(`not an XSD element: ${name}`);
    return colon < 0 ? name : name.slice(colon + 1);
  }

  resolve(qname: string): string {
    const colon = qname.indexOf(':');
    const prefix = colon < 0 ? '' : qname.slice(0, colon);
    const uri = this.prefixes.get(prefix);
    if (uri === undefined) {
      if (prefix === '') return qkey('', qname);
      throw new Error(`unknown prefix in ${qname}`);
    }
    return qkey(uri, colon < 0 ? qname : qname.slice(colon + 1));
  }
}
